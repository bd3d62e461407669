"""kube-apiserver conventions: the upstream RequestInfo test rows and the span-name table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k8s_otel._conventions import (
    RequestInfoError,
    clean_scope,
    format_group_version_kind,
    format_group_version_resource,
    normalized_verb,
    parse_request_info,
    span_name,
)

# kubernetes/apiserver pkg/endpoints/request/requestinfo_test.go, TestGetAPIRequestInfo:
# method, url -> verb, group, version, namespace, resource, subresource, name, parts
API_ROWS = [
    ("GET", "/api/v1/namespaces", "list", "", "v1", "", "namespaces", "", "", ["namespaces"]),
    ("GET", "/api/v1/namespaces/other", "get", "", "v1", "other", "namespaces", "", "other", ["namespaces", "other"]),
    ("GET", "/api/v1/namespaces/other/pods", "list", "", "v1", "other", "pods", "", "", ["pods"]),
    ("GET", "/api/v1/namespaces/other/pods/foo", "get", "", "v1", "other", "pods", "", "foo", ["pods", "foo"]),
    ("HEAD", "/api/v1/namespaces/other/pods/foo", "get", "", "v1", "other", "pods", "", "foo", ["pods", "foo"]),
    ("GET", "/api/v1/pods", "list", "", "v1", "", "pods", "", "", ["pods"]),
    ("HEAD", "/api/v1/pods", "list", "", "v1", "", "pods", "", "", ["pods"]),
    ("GET", "/api/v1/namespaces/other/pods/foo", "get", "", "v1", "other", "pods", "", "foo", ["pods", "foo"]),
    ("GET", "/api/v1/namespaces/other/pods", "list", "", "v1", "other", "pods", "", "", ["pods"]),
    (
        "GET",
        "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource",
        "proxy",
        "",
        "v1",
        "other",
        "pods",
        "",
        "foo",
        ["pods", "foo", "subpath", "not", "a", "subresource"],
    ),
    ("GET", "/api/v1/watch/pods", "watch", "", "v1", "", "pods", "", "", ["pods"]),
    ("GET", "/api/v1/pods?watch=true", "watch", "", "v1", "", "pods", "", "", ["pods"]),
    ("GET", "/api/v1/pods?watch=false", "list", "", "v1", "", "pods", "", "", ["pods"]),
    ("GET", "/api/v1/pods?watch=1", "watch", "", "v1", "", "pods", "", "", ["pods"]),
    ("GET", "/api/v1/pods?watch=0", "list", "", "v1", "", "pods", "", "", ["pods"]),
    ("GET", "/api/v1/watch/namespaces/other/pods", "watch", "", "v1", "other", "pods", "", "", ["pods"]),
    ("GET", "/api/v1/namespaces/other/pods/foo/status", "get", "", "v1", "other", "pods", "status", "foo", ["pods", "foo", "status"]),
    ("GET", "/api/v1/namespaces/other/pods/foo/proxy/subpath", "get", "", "v1", "other", "pods", "proxy", "foo", ["pods", "foo", "proxy", "subpath"]),
    ("PUT", "/api/v1/namespaces/other/finalize", "update", "", "v1", "other", "namespaces", "finalize", "other", ["namespaces", "other", "finalize"]),
    ("PUT", "/api/v1/namespaces/other/status", "update", "", "v1", "other", "namespaces", "status", "other", ["namespaces", "other", "status"]),
    ("PATCH", "/api/v1/namespaces/other/pods/foo", "patch", "", "v1", "other", "pods", "", "foo", ["pods", "foo"]),
    ("DELETE", "/api/v1/namespaces/other/pods/foo", "delete", "", "v1", "other", "pods", "", "foo", ["pods", "foo"]),
    ("POST", "/api/v1/namespaces/other/pods", "create", "", "v1", "other", "pods", "", "", ["pods"]),
    ("DELETE", "/api/v1/nodes", "deletecollection", "", "v1", "", "nodes", "", "", ["nodes"]),
    ("DELETE", "/api/v1/namespaces", "deletecollection", "", "v1", "", "namespaces", "", "", ["namespaces"]),
    ("DELETE", "/api/v1/namespaces/other/pods", "deletecollection", "", "v1", "other", "pods", "", "", ["pods"]),
    ("DELETE", "/apis/extensions/v1/namespaces/other/pods", "deletecollection", "extensions", "v1", "other", "pods", "", "", ["pods"]),
    ("POST", "/apis/extensions/v1beta3/namespaces/other/pods", "create", "extensions", "v1beta3", "other", "pods", "", "", ["pods"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "url", "verb", "group", "version", "namespace", "resource", "subresource", "name", "parts"),
    API_ROWS,
)
def test_api_request_info(
    method: str,
    url: str,
    verb: str,
    group: str,
    version: str,
    namespace: str,
    resource: str,
    subresource: str,
    name: str,
    parts: list[str],
) -> None:
    path, _, query = url.partition("?")
    info = parse_request_info(method, path, query)
    assert info.is_resource_request
    assert (info.verb, info.api_group, info.api_version, info.namespace) == (verb, group, version, namespace)
    assert (info.resource, info.subresource, info.name, list(info.parts)) == (
        resource,
        subresource,
        name,
        parts,
    )
    assert info.api_prefix == ("api" if path.startswith("/api/") else "apis")


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/api/version/",
        "/apis/group/version/",
        "/badprefix/version/resource",
        "/apis/version/resource",  # not enough parts after a group
        "/not-api/version/resource",
        "/apis/extensions/v1beta1",
        "/apis/extensions/v1beta1/",
        "/api/version",
        "/api",
        "",
    ],
)
def test_non_resource_requests(url: str) -> None:
    info = parse_request_info("GET", url)
    assert not info.is_resource_request
    assert (info.verb, info.path) == ("get", url)


@pytest.mark.parametrize(
    ("url", "resource", "name", "subresource"),
    [
        ("/api/version/resource", "resource", "", ""),
        ("/apis/group/version/resource/name/subresource", "resource", "name", "subresource"),
        ("/api/version/resource/name/subresource", "resource", "name", "subresource"),
        ("/apis/batch/v1/job", "job", "", ""),
        ("/apis/batch/v1/job/foo", "job", "foo", ""),
        ("/apis/batch/v1/job/foo/scale", "job", "foo", "scale"),
    ],
)
def test_resource_requests(url: str, resource: str, name: str, subresource: str) -> None:
    info = parse_request_info("GET", url)
    assert info.is_resource_request
    assert (info.resource, info.name, info.subresource) == (resource, name, subresource)


def test_bad_watch_and_proxy_urls_are_errors() -> None:
    for url in ("/api/v1/watch", "/api/v1/proxy", "/apis/apps/v1/watch"):
        with pytest.raises(RequestInfoError, match="unable to determine kind and namespace from url"):
            parse_request_info("GET", url)


# TestSelectorParsing
@pytest.mark.parametrize(
    ("query", "verb", "name", "field_selector"),
    [
        ("fieldSelector=metadata.name=name1", "list", "name1", "metadata.name=name1"),
        ("fieldSelector=metadata.name=name1&watch=true", "watch", "name1", "metadata.name=name1"),
        ("fieldSelector=metadata.name=name1,foo", "list", "", "metadata.name=name1,foo"),
        ("fieldSelector=metadata.name=name1,foo&watch=true", "watch", "", "metadata.name=name1,foo"),
        ("fieldSelector=metadata.name%3D..", "list", "", "metadata.name=.."),
        ("fieldSelector=metadata.name!=x", "list", "", "metadata.name!=x"),
        (
            "fieldSelector=metadata.name==x,status.phase=Running",
            "list",
            "x",
            "metadata.name==x,status.phase=Running",
        ),
        ("fieldSelector=metadata.name=x&limit=abc", "list", "", "metadata.name=x"),
        ("labelSelector=app%3Dweb", "list", "", ""),
        # fields.ParseSelector skips empty terms and sorts the rest before RequiresExactMatch (issue 14).
        ("fieldSelector=metadata.name=foo,", "list", "foo", "metadata.name=foo,"),
        ("fieldSelector=,metadata.name=foo,,", "list", "foo", ",metadata.name=foo,,"),
        ("fieldSelector=metadata.name=b,metadata.name=a", "list", "a", "metadata.name=b,metadata.name=a"),
        ("fieldSelector=metadata.name=b,metadata.name==a", "list", "a", "metadata.name=b,metadata.name==a"),
        ("fieldSelector=metadata.name!=a,metadata.name=b", "list", "b", "metadata.name!=a,metadata.name=b"),
        ("fieldSelector=metadata.name=a%5C,b", "list", "a,b", "metadata.name=a\\,b"),
        ("fieldSelector=metadata.name=a=b", "list", "", "metadata.name=a=b"),
        ("fieldSelector=metadata.name=a%5Cx", "list", "", "metadata.name=a\\x"),
        ("fieldSelector=metadata.name=a%5C", "list", "", "metadata.name=a\\"),
        ("fieldSelector=,", "list", "", ","),
    ],
)
def test_selector_parsing(query: str, verb: str, name: str, field_selector: str) -> None:
    info = parse_request_info("GET", "/api/v1/pods", query)
    assert (info.verb, info.name, info.field_selector) == (verb, name, field_selector)


@pytest.mark.parametrize("method", ["get", "post", "Put", "patch", "delete", "head", "OPTIONS", "BREW"])
def test_a_method_go_does_not_know_gives_no_verb(method: str) -> None:
    # RequestInfoFactory switches on req.Method as sent: only the upper-case names map to verbs.
    info = parse_request_info(method, "/api/v1/namespaces/ns/pods/foo")
    assert (info.is_resource_request, info.verb, info.name) == (True, "", "foo")
    collection = parse_request_info(method, "/api/v1/pods", "fieldSelector=metadata.name=foo")
    assert (collection.verb, collection.name) == ("", "")


def test_label_selector_is_kept_for_lists() -> None:
    assert parse_request_info("GET", "/api/v1/pods", "labelSelector=app%3Dweb").label_selector == "app=web"
    assert parse_request_info("GET", "/api/v1/watch/pods", "labelSelector=a").label_selector == ""  # via path


# kubernetes-tracing.md §3.2, the span-name examples table.
@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("GET", "/api/v1/namespaces/default/pods/foo", "GET /api/v1/namespaces/{:namespace}/pods/{:name}"),
        ("GET", "/api/v1/pods", "GET /api/v1/pods"),
        (
            "POST",
            "/apis/apps/v1/namespaces/ns/deployments",
            "POST /apis/apps/v1/namespaces/{:namespace}/deployments",
        ),
        (
            "PUT",
            "/apis/apps/v1/namespaces/ns/deployments/d/scale",
            "PUT /apis/apps/v1/namespaces/{:namespace}/deployments/{:name}/scale",
        ),
        ("GET", "/api/v1/namespaces", "GET /api/v1/namespaces"),
        ("GET", "/api/v1/namespaces/ns", "GET /api/v1/namespaces/{:namespace}/namespaces/{:name}"),
        (
            "PUT",
            "/api/v1/namespaces/ns/finalize",
            "PUT /api/v1/namespaces/{:namespace}/namespaces/{:name}/finalize",
        ),
        ("GET", "/api/v1/watch/namespaces/ns/pods", "GET /api/v1/namespaces/{:namespace}/pods"),
        (
            "GET",
            "/api/v1/proxy/namespaces/ns/pods/foo/a/b",
            "GET /api/v1/namespaces/{:namespace}/pods/{:name}",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods/foo/proxy/sub",
            "GET /api/v1/namespaces/{:namespace}/pods/{:name}/proxy",
        ),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=foo", "GET /api/v1/pods/{:name}"),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=foo,", "GET /api/v1/pods/{:name}"),
        ("get", "/api/v1/pods?fieldSelector=metadata.name=foo", "get /api/v1/pods"),
        ("GET", "/healthz", "GET"),
        ("GET", "/api", "GET"),
        ("GET", "/api/v1", "GET"),
        ("GET", "/apis/apps/v1", "GET"),
        ("GET", "/openapi/v2", "GET"),
        ("GET", "/api/v1/watch", "GET"),  # kube-apiserver answers 500 and never names it: the bare method
    ],
)
def test_span_names(method: str, url: str, expected: str) -> None:
    path, _, query = url.partition("?")
    assert span_name(method, path, query) == expected


@pytest.mark.parametrize(
    ("method", "url", "scope"),
    [
        ("GET", "/api/v1/namespaces/ns/pods/foo", "resource"),
        ("POST", "/api/v1/namespaces/ns/pods", "resource"),
        ("GET", "/api/v1/namespaces/ns/pods", "namespace"),
        ("GET", "/api/v1/pods", "cluster"),
        ("GET", "/healthz", ""),
    ],
)
def test_clean_scope(method: str, url: str, scope: str) -> None:
    assert clean_scope(parse_request_info(method, url)) == scope


@pytest.mark.parametrize(
    ("method", "url", "content_type", "verb"),
    [
        ("GET", "/api/v1/namespaces/ns/pods/foo", "", "GET"),
        ("GET", "/api/v1/namespaces/ns/pods", "", "LIST"),
        ("HEAD", "/api/v1/pods", "", "LIST"),
        ("HEAD", "/api/v1/namespaces/ns/pods/foo", "", "GET"),
        ("GET", "/api/v1/pods?watch=true", "", "WATCH"),
        ("GET", "/api/v1/pods?watch=false", "", "LIST"),
        ("PATCH", "/api/v1/namespaces/ns/pods/foo", "application/apply-patch+yaml", "APPLY"),
        ("PATCH", "/api/v1/namespaces/ns/pods/foo", "application/merge-patch+json", "PATCH"),
        ("GET", "/api/v1/namespaces/ns/pods/foo/log", "", "CONNECT"),
        ("POST", "/api/v1/namespaces/ns/pods/foo/exec", "", "CONNECT"),
        ("POST", "/api/v1/namespaces/ns/pods", "", "POST"),
        ("DELETE", "/api/v1/namespaces/ns/pods", "", "DELETE"),
        ("GET", "/healthz", "", "GET"),
    ],
)
def test_normalized_verb(method: str, url: str, content_type: str, verb: str) -> None:
    path, _, query = url.partition("?")
    assert normalized_verb(method, parse_request_info(method, path, query), query, content_type) == verb


def test_resource_formatting() -> None:
    assert format_group_version_resource("apps", "v1", "deployments") == "apps/v1, Resource=deployments"
    assert format_group_version_resource("", "v1", "pods") == "/v1, Resource=pods"
    assert format_group_version_kind("", "v1", "Pod") == "/v1, Kind=Pod"


@given(
    st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "X"]),
    st.text(max_size=200),
    st.text(max_size=100),
)
def test_arbitrary_urls_never_raise_from_span_name(method: str, path: str, query: str) -> None:
    name = span_name(method, path, query)
    assert name == method or name.startswith(method + " /")


# requestinfo_test.go, TestSelectorParsing (kubernetes master), row for row.
@pytest.mark.parametrize(
    ("method", "url", "name", "verb", "field_selector", "label_selector"),
    [
        ("GET", "/apis/group/version/resource", "", "list", "", ""),
        (
            "GET",
            "/apis/group/version/resource?fieldSelector=metadata.name=name1",
            "name1",
            "list",
            "metadata.name=name1",
            "",
        ),
        (
            "GET",
            "/apis/group/version/resource?watch=true&fieldSelector=metadata.name=name1",
            "name1",
            "watch",
            "metadata.name=name1",
            "",
        ),
        (
            "GET",
            "/apis/group/version/resource?fieldSelector=foo=bar&labelSelector=baz=qux",
            "",
            "list",
            "foo=bar",
            "baz=qux",
        ),
        (
            "GET",
            "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo",
            "",
            "list",
            "metadata.name=name1,foo",
            "",
        ),
        (
            "GET",
            "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=true",
            "",
            "watch",
            "metadata.name=name1,foo",
            "",
        ),
        (
            "GET",
            "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=false",
            "",
            "list",
            "metadata.name=name1,foo",
            "",
        ),
        (
            "DELETE",
            "/apis/group/version/resource?fieldSelector=foo=bar&labelSelector=baz=qux",
            "",
            "deletecollection",
            "foo=bar",
            "baz=qux",
        ),
        (
            "GET",
            "/apis/group/version/resource?fieldSelector=metadata.name=foo&fieldSelector=metadata.name=bar"
            "&labelSelector=foo=bar&labelSelector=foo=baz",
            "foo",
            "list",
            "metadata.name=foo",
            "foo=bar",
        ),
        (
            "GET",
            "/apis/group/version/resource/name?fieldSelector=foo=bar&labelSelector=foo=bar",
            "name",
            "get",
            "",
            "",
        ),
        (
            "GET",
            "/apis/group/version/watch/resource?fieldSelector=metadata.name=foo&labelSelector=foo=bar",
            "",
            "watch",
            "",
            "",
        ),
        (
            "GET",
            "/apis/group/version/watch/resource/name?fieldSelector=metadata.name=foo&labelSelector=foo=bar",
            "name",
            "watch",
            "",
            "",
        ),
    ],
)
def test_upstream_selector_parsing_rows(
    method: str, url: str, name: str, verb: str, field_selector: str, label_selector: str
) -> None:
    path, _, query = url.partition("?")
    info = parse_request_info(method, path, query)
    assert (info.name, info.verb, info.field_selector, info.label_selector) == (
        name,
        verb,
        field_selector,
        label_selector,
    )
