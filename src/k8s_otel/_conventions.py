"""kube-apiserver's request conventions: RequestInfo, span names, NormalizedVerb, CleanScope.

A Python client span named by ``span_name`` carries exactly the name kube-apiserver gives its
server span for the same request, so the two line up in a trace view. Ported from
kubernetes/apiserver ``pkg/endpoints/request/requestinfo.go`` (``NewRequestInfo``),
``pkg/endpoints/filters/traces.go`` (the span-name formatter) and
``pkg/endpoints/metrics/metrics.go`` (``CleanScope``, ``NormalizedVerb``). The attribute keys are
in ``k8s_otel._attributes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional
from urllib.parse import parse_qs

from k8s_otel._exceptions import K8sOtelError

__all__ = [
    "CALL_MUTATING_WEBHOOK",
    "CALL_VALIDATING_WEBHOOK",
    "RequestInfo",
    "RequestInfoError",
    "clean_scope",
    "format_group_version_kind",
    "format_group_version_resource",
    "normalized_verb",
    "parse_request_info",
    "span_name",
    "span_name_from_request_info",
]

# Span names kube-apiserver's admission dispatchers use.
CALL_VALIDATING_WEBHOOK = "Call validating webhook"
CALL_MUTATING_WEBHOOK = "Call mutating webhook"

_API_PREFIXES = frozenset({"api", "apis"})
_GROUPLESS_PREFIXES = frozenset({"api"})
_SPECIAL_VERBS = frozenset({"proxy", "watch"})
_NO_SUBRESOURCE_VERBS = frozenset({"proxy"})
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_VERB_BY_METHOD = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
_CONNECT_SUBRESOURCES = frozenset({"log", "exec", "portforward", "attach", "proxy"})
_APPLY_PATCH = "application/apply-patch+yaml"


class RequestInfoError(K8sOtelError, ValueError):
    """The URL cannot be a Kubernetes API request (kube-apiserver answers 500 and never traces it)."""


@dataclass(frozen=True)
class RequestInfo:
    """``request.RequestInfo``, field for field."""

    is_resource_request: bool
    path: str
    verb: str
    api_prefix: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    parts: tuple[str, ...] = ()
    field_selector: str = ""
    label_selector: str = ""


def format_group_version_resource(group: str, version: str, resource: str) -> str:
    """``schema.GroupVersionResource.String()``: ``apps/v1, Resource=deployments``, ``/v1, Resource=pods``."""
    return f"{group}/{version}, Resource={resource}"


def format_group_version_kind(group: str, version: str, kind: str) -> str:
    """``schema.GroupVersionKind.String()``: ``apps/v1, Kind=Deployment``, ``/v1, Kind=Pod``."""
    return f"{group}/{version}, Kind={kind}"


def _is_path_segment_name(name: str) -> bool:
    return name not in (".", "..") and "/" not in name and "%" not in name


def _split_terms(selector: str) -> list[str]:
    """fields ``splitTerms``: split on commas not escaped by a backslash."""
    if not selector:
        return []
    terms, start, in_slash = [], 0, False
    for index, char in enumerate(selector):
        if in_slash:
            in_slash = False
        elif char == "\\":
            in_slash = True
        elif char == ",":
            terms.append(selector[start:index])
            start = index + 1
    terms.append(selector[start:])
    return terms


def _split_term(term: str) -> Optional[tuple[str, str, str]]:
    """fields ``splitTerm``: the left-most operator (``!=``, ``==`` or ``=``) splits the term."""
    for index in range(len(term)):
        for operator in ("!=", "==", "="):
            if term.startswith(operator, index):
                return term[:index], operator, term[index + len(operator) :]
    return None


def _unescape_value(value: str) -> Optional[str]:
    """fields ``UnescapeValue``: ``\\\\``, ``\\,`` and ``\\=`` decoded; None where Go returns an error."""
    out, in_slash = [], False
    for char in value:
        if in_slash:
            if char not in "\\,=":
                return None
            out.append(char)
            in_slash = False
        elif char == "\\":
            in_slash = True
        elif char in ",=":
            return None
        else:
            out.append(char)
    return None if in_slash else "".join(out)


def _field_selector_name(selector: str) -> tuple[Optional[str], bool]:
    """``fields.ParseSelector(s).RequiresExactMatch("metadata.name")``, and whether ``s`` parsed.

    Go sorts the terms before building the selector and takes the first exact match, so with
    repeated ``metadata.name`` terms the smallest value wins; empty terms (a trailing comma) are
    skipped.
    """
    name = None
    for term in sorted(_split_terms(selector)):
        if not term:
            continue
        split = _split_term(term)
        if split is None:
            return None, False
        key, operator, raw_value = split
        value = _unescape_value(raw_value)
        if value is None:
            return None, False
        if name is None and key == "metadata.name" and operator != "!=":
            name = value
    return name, True


def _list_options_decode(values: dict[str, list[str]]) -> bool:
    """Whether ``ListOptions`` decodes from the query (integers that are not integers fail it)."""
    for key in ("limit", "timeoutSeconds"):
        if key in values:
            try:
                int(values[key][0])
            except ValueError:
                return False
    return True


def _watch_value(values: list[str]) -> bool:
    return bool(values) and values[0].lower() not in ("0", "false")


def parse_request_info(method: str, path: str, query: str = "") -> RequestInfo:
    """``RequestInfoFactory.NewRequestInfo`` with kube-apiserver's default prefixes (api, apis).

    Raises RequestInfoError where kube-apiserver does (``/api/v1/watch`` with nothing after it).
    """
    info = RequestInfo(is_resource_request=False, path=path, verb=method.lower())
    parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
    if len(parts) < 3 or parts[0] not in _API_PREFIXES:
        return info
    api_prefix, parts = parts[0], parts[1:]
    api_group = ""
    if api_prefix not in _GROUPLESS_PREFIXES:
        if len(parts) < 3:  # group, version and at least a resource
            return info
        api_group, parts = parts[0], parts[1:]
    api_version, parts = parts[0], parts[1:]

    via_path = False
    if parts and parts[0] in _SPECIAL_VERBS:
        if len(parts) < 2:
            raise RequestInfoError(f"unable to determine kind and namespace from url, {path}")
        verb, parts, via_path = parts[0], parts[1:], True
    else:
        verb = _VERB_BY_METHOD.get(method, "")  # Go switches on the method as sent: "post" gives no verb

    namespace = ""
    if len(parts) > 1 and parts[0] == "namespaces":
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]

    subresource = parts[2] if len(parts) >= 3 and verb not in _NO_SUBRESOURCE_VERBS else ""
    name = parts[1] if len(parts) >= 2 else ""
    resource = parts[0] if parts else ""

    field_selector = label_selector = ""
    if query or (not name and verb in ("get", "delete")):
        values = parse_qs(query, keep_blank_values=True)
        if not name and verb == "get":
            verb = "watch" if _watch_value(values.get("watch", [])) else "list"
            selector_name, parsed = _field_selector_name(values.get("fieldSelector", [""])[0])
            parsed = parsed and _list_options_decode(values)
            if parsed and selector_name and _is_path_segment_name(selector_name):
                name = selector_name
        if not name and verb == "delete":
            verb = "deletecollection"
        if not via_path and verb in ("list", "watch", "deletecollection"):
            field_selector = values.get("fieldSelector", [""])[0]
            label_selector = values.get("labelSelector", [""])[0]

    return RequestInfo(
        is_resource_request=True,
        path=path,
        verb=verb,
        api_prefix=api_prefix,
        api_group=api_group,
        api_version=api_version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
        parts=tuple(parts),
        field_selector=field_selector,
        label_selector=label_selector,
    )


def span_name_from_request_info(method: str, info: Optional[RequestInfo]) -> str:
    """kube-apiserver's server span name: the method, then the path template for resource requests."""
    if info is None or not info.is_resource_request:
        return method
    path = ["/", info.api_prefix]
    if info.api_group:
        path += ["/", info.api_group]
    path += ["/", info.api_version]
    if info.namespace:
        path.append("/namespaces/{:namespace}")
    path += ["/", info.resource]
    if info.name:
        path.append("/{:name}")
    if info.subresource:
        path += ["/", info.subresource]
    return f"{method} {''.join(path)}"


@lru_cache(maxsize=1024)
def span_name(method: str, path: str, query: str = "") -> str:
    """The name kube-apiserver gives its server span for this request (bounded cache: names repeat).

    A URL kube-apiserver would refuse to parse gives the bare method.
    """
    try:
        info = parse_request_info(method, path, query if "fieldSelector" in query else "")
    except RequestInfoError:
        return method
    return span_name_from_request_info(method, info)


def clean_scope(info: RequestInfo) -> str:
    """``CleanScope``: resource, namespace, cluster, or "" for non-resource requests."""
    if info.name or info.verb == "create":
        return "resource"
    if info.namespace:
        return "namespace"
    if info.is_resource_request:
        return "cluster"
    return ""


def normalized_verb(method: str, info: Optional[RequestInfo], query: str = "", content_type: str = "") -> str:
    """``NormalizedVerb``: GET, LIST, WATCH, APPLY, CONNECT, POST, PUT, PATCH, DELETE…"""
    verb = method.upper()
    if info is not None and verb in ("GET", "HEAD"):
        scope = clean_scope(info)
        verb = "LIST" if scope not in ("resource", "") else "GET"
    if method.upper() in ("GET", "LIST") and query and _watch_value(parse_qs(query).get("watch", [])):
        verb = "WATCH"
    if verb == "WATCHLIST":
        verb = "WATCH"
    if verb == "PATCH" and content_type.split(";", maxsplit=1)[0].strip() == _APPLY_PATCH:
        verb = "APPLY"
    if info is not None and info.is_resource_request and info.subresource in _CONNECT_SUBRESOURCES:
        verb = "CONNECT"
    return verb
