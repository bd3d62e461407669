"""The writer rules of KEP-5915 for API calls: which request bodies get the trace context stamp.

Stamped: creates (POST to a collection) and updates of the main resource (PUT, and merge,
strategic-merge and apply patches). Never: subresources (``/status``, ``/scale``, ``/binding``,
``/eviction``, ...), deletes, reads, ``coordination.k8s.io`` (leases: leader election and node
heartbeats), ``events``, and reviews that are not stored objects. A JSON patch gets an ``add`` only
when the patch itself leaves ``/metadata/annotations`` a map, so the added operation cannot fail;
otherwise it is left alone. The caller's body is never mutated (a stamped copy is sent), and any
doubt (an unknown path or content type, a body of an unexpected shape) means no stamp.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Optional

from k8s_otel._conventions import RequestInfoError, parse_request_info
from k8s_otel.objects import TRACEPARENT_ANNOTATION

__all__ = ["INJECT_OBJECT_CONTEXT_ENV", "stamped_body"]

INJECT_OBJECT_CONTEXT_ENV = "K8S_OTEL_KUBERNETES_INJECT_OBJECT_CONTEXT"

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
_OBJECT_PATCHES = frozenset({MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH})
_JSON_BODIES = frozenset({"", "application/json"})

# Housekeeping and heartbeats (KEP: "do not inject: ... heartbeats, leader election"), and kinds
# that are requests rather than stored objects.
_NEVER_GROUPS = frozenset({"coordination.k8s.io", "authentication.k8s.io", "authorization.k8s.io"})
_NEVER_RESOURCES = frozenset({"events"})
_ANNOTATIONS_AND_ABOVE = frozenset({"", "/metadata", "/metadata/annotations"})
_ANNOTATIONS_POINTER = "/metadata/annotations/" + TRACEPARENT_ANNOTATION.replace("~", "~0").replace("/", "~1")


@lru_cache(maxsize=1024)
def _writes_main_resource(method: str, path: str) -> bool:
    """Whether ``method path`` creates or updates a stored object itself (not a subresource)."""
    try:
        info = parse_request_info(method, path)
    except RequestInfoError:
        return False
    if not info.is_resource_request or info.subresource:
        return False
    if info.api_group in _NEVER_GROUPS or info.resource in _NEVER_RESOURCES:
        return False
    if method == "POST":
        return info.verb == "create" and not info.name
    return info.verb in ("update", "patch") and bool(info.name)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _with_stamp(body: Any, traceparent: str, *, is_patch: bool) -> Optional[dict[str, Any]]:
    """A copy of an object-shaped body with the stamp in its annotations; None when in doubt."""
    if not isinstance(body, Mapping):
        return None
    metadata = body.get("metadata")
    if metadata is None:
        if is_patch and "metadata" in body:
            return None  # ``"metadata": null`` in a merge patch means something: leave it
        metadata = {}
    if not isinstance(metadata, Mapping):
        return None
    annotations = metadata.get("annotations")
    if annotations is None:
        if is_patch and "annotations" in metadata:
            return None  # a patch that deletes every annotation: do not undo half of it
        annotations = {}
    if not isinstance(annotations, Mapping):
        return None
    return {
        **body,
        "metadata": {**metadata, "annotations": {**annotations, TRACEPARENT_ANNOTATION: traceparent}},
    }


def _leaves_annotations_a_map(operations: Sequence[Any]) -> bool:
    """Whether, after the patch applies, ``/metadata/annotations`` certainly exists as a map.

    True only when an operation sets it (or ``/metadata`` with it) to a map and no later operation
    removes, moves or replaces it (or ``/metadata``, or the whole document).
    """
    ensured = False
    for operation in operations:
        if not isinstance(operation, Mapping):
            return False
        op, path, source = operation.get("op"), operation.get("path"), operation.get("from")
        if not isinstance(op, str) or not isinstance(path, str):
            return False
        if op == "test":
            continue
        if op == "move" and source in _ANNOTATIONS_AND_ABOVE:
            ensured = False
        if path not in _ANNOTATIONS_AND_ABOVE:
            continue  # below the annotations map (or elsewhere): its existence is unchanged
        value = operation.get("value")
        if op in ("add", "replace"):
            if path == "/metadata/annotations":
                ensured = isinstance(value, Mapping)
            elif path == "/metadata":
                ensured = isinstance(value, Mapping) and isinstance(value.get("annotations"), Mapping)
            elif path == "":
                metadata = value.get("metadata") if isinstance(value, Mapping) else None
                ensured = isinstance(metadata, Mapping) and isinstance(metadata.get("annotations"), Mapping)
            else:
                ensured = False
        else:
            ensured = False  # remove, move or copy onto it: in doubt
    return ensured


def stamped_body(
    method: str,
    path: str,
    content_type: str,
    body: Any,
    traceparent: str,
    *,
    dict_json_patch_is_strategic: bool = False,
) -> Optional[Any]:
    """The body to send instead, stamped with ``traceparent``; None to send the body untouched.

    ``dict_json_patch_is_strategic``: the client itself turns a mapping sent as a JSON patch into a
    strategic merge patch (``kubernetes`` 37 does it inside ``RESTClientObject.request``).
    """
    if method not in ("POST", "PUT", "PATCH") or not _writes_main_resource(method, path):
        return None
    media_type = _media_type(content_type)
    if method in ("POST", "PUT"):
        return _with_stamp(body, traceparent, is_patch=False) if media_type in _JSON_BODIES else None
    if media_type == JSON_PATCH and isinstance(body, Mapping) and dict_json_patch_is_strategic:
        media_type = STRATEGIC_MERGE_PATCH
    if media_type in _OBJECT_PATCHES:
        return _with_stamp(body, traceparent, is_patch=True)
    if media_type == JSON_PATCH and isinstance(body, list) and _leaves_annotations_a_map(body):
        return [*body, {"op": "add", "path": _ANNOTATIONS_POINTER, "value": traceparent}]
    return None
