"""Read the few fields tracing needs from an AdmissionReview without decoding ``object``/``oldObject``.

kube-apiserver writes an AdmissionReview with Go's encoder, in struct order: ``kind``,
``apiVersion``, ``request`` and, inside it, ``uid``, ``kind``, ``resource``, ``subResource``,
``requestKind``, ``requestResource``, ``requestSubResource``, ``name``, ``namespace``,
``operation``, ``userInfo``, ``object``, ``oldObject``, ``dryRun``, ``options``. Everything tracing
reads but ``dryRun`` comes before the first large value, so the reader takes the prefix up to the
``"object"`` key and the tail from ``"dryRun"`` to the end, closes each into a small JSON document
and decodes it with ``json.loads`` itself (so each value is exactly what ``json.loads`` gives for
the whole body), and skips the bytes in between. Whenever the body is not in that shape (another
order, an unknown or repeated key before ``object``, anything after ``options``, a prefix longer
than 64 KiB, bytes that are not UTF-8) it returns None and the caller parses the whole body.
Bodies under 16 KiB are left to a full parse too: for them it is the cheaper of the two.

What it does not do is look at the bytes between ``"object":`` and ``,"dryRun"``: it takes them to
be the values of ``object`` and ``oldObject``, as kube-apiserver writes them. A body that puts
another request field there (or closes ``request`` inside ``object``, say with a root member after
``request`` that ends in its own ``dryRun``) is read as if that field were absent; ``fast_reader=False`` on the webhook wrappers parses every body in full.
"""

from __future__ import annotations

import codecs
import json
from typing import Any, Optional

__all__ = ["read_review_fields"]

_WHITESPACE_BYTES = b" \t\n\r"
_COMMA = ord(",")
_HEAD_BYTES = 64 << 10  # the fields before "object" must fit in this
_SMALL_BYTES = 16 << 10  # below this, a full json.loads costs less than the prefix and tail reads

# kube-apiserver's order of the request fields before "object" (admission/v1 AdmissionRequest).
#: The ``request`` fields tracing reads, in kube-apiserver's Go struct order (``AdmissionRequest``):
#: all but ``dryRun`` come before ``object``; ``object``, ``oldObject`` and ``options`` are skipped.
REQUEST_FIELDS = (
    "uid",
    "kind",
    "resource",
    "subResource",
    "requestKind",
    "requestResource",
    "requestSubResource",
    "name",
    "namespace",
    "operation",
    "userInfo",
    "dryRun",
)
_ORDER = {name: index for index, name in enumerate(REQUEST_FIELDS[:-1])}  # the prefix before "object"
_ALWAYS_WRITTEN = frozenset({"uid", "kind", "resource", "operation", "userInfo"})  # no omitempty


class _NotTheShape(Exception):
    """The body is not laid out as kube-apiserver writes it: parse it in full."""


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as the scanner saw it: its (key, value) pairs, in order, repeats included."""


_DECODER = json.JSONDecoder(object_pairs_hook=_Pairs)


def _as_json_loads(value: Any) -> Any:
    """What json.loads gives for a value decoded with ``_Pairs`` objects (repeated keys: the last wins)."""
    kind = type(value)
    if kind is _Pairs:
        return {key: item if type(item) is str else _as_json_loads(item) for key, item in value}
    if kind is list:
        return [item if type(item) is str else _as_json_loads(item) for item in value]
    return value


def _loads_pairs(text: str) -> Any:
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError):
        raise _NotTheShape from None


def _read_prefix(head: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The root members before ``request`` and the request members before ``object``.

    ``head`` ends just before the ``"object"`` key: closing it with ``}}`` gives a document that is
    valid exactly when that key is a member of the root's last member (``request``), at depth 2.
    """
    text = head.rstrip(" \t\n\r")
    if not text.endswith(","):
        raise _NotTheShape
    root = _loads_pairs(text[:-1] + "}}")
    if not isinstance(root, _Pairs) or not root or root[-1][0] != "request":
        raise _NotTheShape
    root_keys = [key for key, _ in root]
    request = root[-1][1]
    if len(set(root_keys)) != len(root_keys) or not isinstance(request, _Pairs):
        raise _NotTheShape
    positions = [_ORDER.get(key, -1) for key, _ in request]
    if -1 in positions or positions != sorted(set(positions)):
        raise _NotTheShape  # an unknown, repeated or reordered field before "object"
    fields = {key: _as_json_loads(value) for key, value in request}
    if not _ALWAYS_WRITTEN.issubset(fields):
        raise _NotTheShape
    return {key: _as_json_loads(value) for key, value in root[:-1]}, fields


def _read_tail(tail: str) -> Any:
    """``"dryRun": <value>[, "options": <value>] } }`` to the end: the dryRun value."""
    text = tail.rstrip(" \t\n\r")
    if not text.endswith("}"):
        raise _NotTheShape
    members = _loads_pairs("{" + text[:-1])  # the request's last members, closed by its own "}"
    if not isinstance(members, _Pairs) or [key for key, _ in members] not in (
        ["dryRun"],
        ["dryRun", "options"],
    ):
        raise _NotTheShape
    return _as_json_loads(members[0][1])


def read_review_fields(body: bytes) -> Optional[dict[str, Any]]:
    """``{"apiVersion", "kind", "request": {the fields tracing reads}}`` as ``json.loads`` would give
    them, read from the prefix and the tail only; None when the body is not in kube-apiserver's
    shape (the caller then parses it in full). Never raises."""
    if len(body) < _SMALL_BYTES:
        return None  # json.loads is cheaper than the two reads for a small body
    try:
        cut = body.find(b'"object"', 0, _HEAD_BYTES)
        if cut < 0:
            raise _NotTheShape
        after = body[cut + 8 : cut + 40].lstrip(_WHITESPACE_BYTES)
        if not after.startswith(b":"):
            raise _NotTheShape
        root, request = _read_prefix(codecs.utf_8_decode(body[:cut], "strict", True)[0])
        start = body.rfind(b'"dryRun"')
        if start <= cut:
            raise _NotTheShape
        comma = start - 1
        while body[comma] in _WHITESPACE_BYTES:
            comma -= 1
        if body[comma] != _COMMA:  # "dryRun" is a member after another one, not the start of a value
            raise _NotTheShape
        request["dryRun"] = _read_tail(codecs.utf_8_decode(body[start:], "strict", True)[0])
    except (_NotTheShape, ValueError, IndexError, RecursionError):
        return None
    root["request"] = request
    return root
