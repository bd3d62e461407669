"""What kube-apiserver sends an admission webhook, and what it accepts back.

Reads only the identity and outcome fields of an AdmissionReview: never ``object``,
``oldObject``, ``options``, the patch body or ``userInfo.extra``, which may hold Secrets. The
response checks are kube-apiserver's ``VerifyAdmissionResponse`` (kubernetes/apiserver
``pkg/admission/plugin/webhook/request/admissionreview.go``), with its messages, so a webhook that
would be refused is told why before the apiserver says it in a log nobody reads. Nothing here
raises on bad input: problems are returned as text, and every value taken from the input is
bounded (``k8s_otel._errors.bounded``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union

from k8s_otel._conventions import format_group_version_kind, format_group_version_resource
from k8s_otel._errors import MAX_ATTRIBUTE_LENGTH, bounded
from k8s_otel._review_reader import REQUEST_FIELDS, read_review_fields

__all__ = [
    "ADMISSION_V1",
    "ADMISSION_V1BETA1",
    "REQUEST_FIELDS",
    "ReviewRequest",
    "ReviewResponse",
    "check_review_response",
    "format_group_version_kind",
    "format_group_version_resource",
    "parse_review_request",
    "review_request_from_document",
]

ADMISSION_V1 = "admission.k8s.io/v1"
ADMISSION_V1BETA1 = "admission.k8s.io/v1beta1"
_VERSIONS = (ADMISSION_V1, ADMISSION_V1BETA1)
_KIND = "AdmissionReview"
_MAX_SHOWN = 64
_MAX_GROUPS = 64


def _shown(value: object) -> str:
    """A value quoted for a problem text: at most 64 characters, never a whole object."""
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, (bool, int, float)):
        text = json.dumps(value)
    elif isinstance(value, Mapping):
        text = "{…}"
    elif isinstance(value, (list, tuple)):
        text = "[…]"
    else:
        text = type(value).__name__
    return json.dumps(text[:_MAX_SHOWN] + ("…" if len(text) > _MAX_SHOWN else ""), ensure_ascii=False)


def _str(value: object, limit: int = MAX_ATTRIBUTE_LENGTH) -> str:
    if type(value) is str:
        return value if len(value) <= limit else value[:limit]
    return bounded(value, limit) if isinstance(value, str) else ""


_EMPTY: Mapping[str, Any] = {}


def _object(value: object) -> Mapping[str, Any]:
    return value if type(value) is dict or isinstance(value, Mapping) else _EMPTY


@dataclass(frozen=True)
class ReviewRequest:
    """The identity fields of an AdmissionReview request; ``problems`` says what was wrong with it.

    ``resource``/``subresource`` are the request's own (``requestResource``/``requestSubResource``,
    as kube-apiserver's ``Call … webhook`` span has them); ``matched_resource`` is ``request.resource``,
    the resource the webhook's rule matched, after any version conversion.
    """

    api_version: str = ""
    uid: Optional[str] = None
    operation: str = ""
    resource: str = ""
    subresource: str = ""
    matched_resource: str = ""
    name: str = ""
    namespace: str = ""
    kind: str = ""
    dry_run: Optional[bool] = None
    username: str = ""
    groups: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    has_request: bool = False

    @property
    def is_review(self) -> bool:
        """True when this is an AdmissionReview the apiserver could have sent (version and uid known)."""
        return self.api_version in _VERSIONS and self.uid is not None


def _load(
    body: Union[bytes, Mapping[str, Any]], what: str
) -> tuple[Optional[Mapping[str, Any]], Optional[str]]:
    if isinstance(body, Mapping):
        return body, None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError, TypeError):
        return None, f"{what} is not JSON"
    if not isinstance(document, dict):
        return None, f"{what} is not a JSON object"
    return document, None


def _gvr(value: object) -> str:
    resource = _object(value)
    if not resource:
        return ""
    return format_group_version_resource(
        _str(resource.get("group"), 253),
        _str(resource.get("version"), 63),
        _str(resource.get("resource"), 253),
    )


def parse_review_request(body: Union[bytes, Mapping[str, Any]], *, fast: bool = True) -> ReviewRequest:
    """Read the AdmissionReview request fields that tracing records (raw JSON or parsed). Never raises.

    Raw JSON in kube-apiserver's field order is read from its prefix and tail only, so the cost
    does not grow with ``object``/``oldObject`` (``k8s_otel._review_reader``); ``fast=False``, or
    any other shape, parses it in full.
    """
    try:
        if fast and isinstance(body, (bytes, bytearray)):
            picked = read_review_fields(bytes(body) if isinstance(body, bytearray) else body)
            if picked is not None:
                return review_request_from_document(picked)
        document, problem = _load(body, "request body")
        if document is None:
            return ReviewRequest(problems=(str(problem),))
        return review_request_from_document(document)
    except Exception as error:  # a hostile Mapping (unhashable keys, recursion): never raise into the app
        return ReviewRequest(problems=(f"request body could not be read: {type(error).__name__}",))


def review_request_from_document(document: Mapping[str, Any]) -> ReviewRequest:
    """The ReviewRequest for a decoded AdmissionReview (only ``REQUEST_FIELDS`` are looked at)."""
    problems: list[str] = []
    api_version, kind = _str(document.get("apiVersion")), document.get("kind")
    if kind != _KIND:
        problems.append(f"request kind is {_shown(kind)}, not AdmissionReview")
    if api_version not in _VERSIONS:
        problems.append(f"request apiVersion {_shown(api_version)} is not admission.k8s.io/v1 or v1beta1")
    request = document.get("request")
    if type(request) is not dict and not isinstance(request, Mapping):
        problems.append("the AdmissionReview has no request")
        return ReviewRequest(api_version=api_version, problems=tuple(problems))
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        problems.append("the AdmissionReview request has no uid")
        uid = None
    gvk, user = _object(request.get("kind")), _object(request.get("userInfo"))
    # kube-apiserver's span has the request's own resource; v1beta1 from older servers has only the
    # matched one (no requestResource), which is then the same.
    request_resource = request.get("requestResource")
    if type(request_resource) is dict or isinstance(request_resource, Mapping):
        resource, subresource = _gvr(request_resource), _str(request.get("requestSubResource"))
    else:
        resource, subresource = _gvr(request.get("resource")), _str(request.get("subResource"))
    dry_run = request.get("dryRun")
    groups = user.get("groups")
    return ReviewRequest(
        api_version=api_version,
        uid=uid,  # kept whole for the response check; bounded where it becomes an attribute
        operation=_str(request.get("operation"), 64),
        resource=resource,
        subresource=subresource,
        matched_resource=_gvr(request.get("resource")),
        name=_str(request.get("name"), 253),
        namespace=_str(request.get("namespace"), 253),
        kind=format_group_version_kind(
            _str(gvk.get("group"), 253), _str(gvk.get("version"), 63), _str(gvk.get("kind"), 253)
        )
        if gvk
        else "",
        dry_run=dry_run if isinstance(dry_run, bool) else None,
        username=_str(user.get("username")),
        groups=tuple(bounded(g) for g in groups[:_MAX_GROUPS] if isinstance(g, str))
        if isinstance(groups, list)
        else (),
        problems=tuple(problems),
        has_request=True,
    )


@dataclass(frozen=True)
class ReviewResponse:
    """The outcome fields of an AdmissionReview response, and what kube-apiserver would reject."""

    allowed: Optional[bool] = None
    status_code: Optional[int] = None
    patch_type: Optional[str] = None
    patch_operations: Optional[int] = None
    warnings: int = 0
    problems: tuple[str, ...] = ()


def _count_patch_operations(patch: object) -> tuple[Optional[int], Optional[str]]:
    if not isinstance(patch, str):
        return None, "response.patch is not a base64 string"
    try:
        operations = json.loads(base64.b64decode(patch, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        return None, "response.patch is not base64-encoded JSON"
    if not isinstance(operations, list):
        return None, "response.patch is not a JSON Patch array"
    return len(operations), None


def check_review_response(
    request: ReviewRequest, body: Union[bytes, Mapping[str, Any]], webhook_type: Optional[str] = None
) -> ReviewResponse:
    """Read the response and apply kube-apiserver's checks for the request's version. Never raises.

    ``webhook_type`` is ``"validating"``, ``"mutating"`` or None (unknown: the patch rules that
    depend on it are skipped). Values quoted in problems are cut to 64 characters.
    """
    try:
        document, problem = _load(body, "response body")
        if document is None:
            return ReviewResponse(problems=(f"{problem}: kube-apiserver cannot decode it",))
        return _check(request, document, webhook_type)
    except Exception as error:  # a hostile Mapping: never raise into the app
        return ReviewResponse(problems=(f"response body could not be read: {type(error).__name__}",))


def _check(
    request: ReviewRequest, document: Mapping[str, Any], webhook_type: Optional[str]
) -> ReviewResponse:
    problems: list[str] = []
    response = document.get("response")
    if not isinstance(response, Mapping):
        return ReviewResponse(problems=("webhook response was absent",))

    allowed = response.get("allowed")
    status = _object(response.get("status"))
    code = status.get("code")
    patch, patch_type = response.get("patch"), response.get("patchType")
    warnings = response.get("warnings")
    patch_operations = None
    if patch is not None:
        patch_operations, patch_problem = _count_patch_operations(patch)
        if patch_problem:
            problems.append(patch_problem)

    if request.api_version == ADMISSION_V1:
        got_uid = response.get("uid")
        if got_uid != request.uid:
            problems.append(f"expected response.uid={_shown(request.uid or '')}, got {_shown(_str(got_uid))}")
        api_version, kind = _str(document.get("apiVersion")), _str(document.get("kind"))
        if api_version != ADMISSION_V1 or kind != _KIND:
            group, _, version = api_version.rpartition("/") if "/" in api_version else ("", "", api_version)
            shown = format_group_version_kind(group[:_MAX_SHOWN], version[:_MAX_SHOWN], kind[:_MAX_SHOWN])
            problems.append(
                f"expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {shown}"
            )
        if webhook_type == "mutating":
            if patch is not None and patch_type is None:
                problems.append("webhook returned response.patch but not response.patchType")
            if patch_type is not None and patch is None:
                problems.append("webhook returned response.patchType but not response.patch")
            if patch_type == "":
                problems.append('webhook returned invalid response.patchType of ""')
        elif webhook_type == "validating":
            if patch is not None:
                problems.append("validating webhook may not return response.patch")
            if patch_type is not None:
                problems.append("validating webhook may not return response.patchType")

    return ReviewResponse(
        allowed=allowed if isinstance(allowed, bool) else None,
        status_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        patch_type=bounded(patch_type, 64) if isinstance(patch_type, str) else None,
        patch_operations=patch_operations,
        warnings=len(warnings) if isinstance(warnings, list) else 0,
        problems=tuple(problems),
    )
