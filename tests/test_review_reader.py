"""The fast AdmissionReview reader against json.loads: the differential oracle.

For any valid JSON review (random values at every field path, random field order, whitespace,
escapes, unicode, duplicate keys), the fast reader gives exactly what reading the full
``json.loads`` result gives, or falls back (None). The one shape it is documented not to detect
(another request field between ``object`` and ``dryRun``, or ``request`` closed inside ``object``)
is generated too, and checked for what the docs say.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, assume, event, given, settings

from k8s_otel import _review_reader
from k8s_otel._admission import REQUEST_FIELDS, parse_review_request, review_request_from_document
from k8s_otel._review_reader import read_review_fields
from review_strategies import GO_ORDER, reviews


@pytest.fixture(autouse=True, scope="module")
def _fast_reader_for_small_bodies() -> Iterator[None]:
    """The generated bodies are small; let the fast reader take them too (normally: 16 KiB and up)."""
    with mock.patch.object(_review_reader, "_SMALL_BYTES", 0):
        yield


def _same(a: Any, b: Any) -> bool:
    """Equality that holds for NaN as well (json.loads gives a new NaN each time)."""
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)


@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(reviews())
def test_the_fast_reader_gives_what_json_loads_gives_or_falls_back(case: tuple[bytes, bool]) -> None:
    body, required_exact = case
    full = json.loads(body)
    fast = read_review_fields(body)
    event("fast path" if fast is not None else "fell back")
    if fast is None:
        return  # fell back: the caller parses in full
    if not required_exact:
        return  # the documented blind spot: read as if the misplaced field were absent
    assert _same(fast.get("apiVersion"), full.get("apiVersion"))
    assert _same(fast.get("kind"), full.get("kind"))
    request = full.get("request")
    assert isinstance(request, dict)
    for name in REQUEST_FIELDS:
        assert _same(fast["request"].get(name), request.get(name)), name
    assert repr(review_request_from_document(fast)) == repr(review_request_from_document(full))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(reviews())
def test_parse_review_request_is_the_same_fast_or_full(case: tuple[bytes, bool]) -> None:
    body, required_exact = case
    assume(required_exact)
    assert repr(parse_review_request(body)) == repr(parse_review_request(body, fast=False))


def test_kube_apiserver_shaped_bodies_take_the_fast_path() -> None:
    request = {name: None for name in GO_ORDER}
    request.update(uid="u", kind={"group": "", "version": "v1", "kind": "Pod"}, operation="CREATE",
                   resource={"group": "", "version": "v1", "resource": "pods"}, userInfo={"username": "a"},
                   object={"big": "x" * 100_000}, dryRun=False)  # fmt: skip
    request = {k: v for k, v in request.items() if v is not None or k in ("oldObject", "options")}
    body = json.dumps({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request},
                      separators=(",", ":")).encode()  # fmt: skip
    fast = read_review_fields(body)
    assert fast is not None and fast["request"]["dryRun"] is False and "object" not in fast["request"]
    assert not math.isnan(0.0)


def test_the_documented_blind_spot() -> None:
    # "name" after "object", everything else in kube-apiserver's order: read as absent (docs say so).
    body = (b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{},'
            b'"resource":{},"operation":"CREATE","userInfo":{},"object":{},"name":"late","dryRun":true,'
            b'"options":null}}')  # fmt: skip
    fast = read_review_fields(body)
    assert fast is not None and "name" not in fast["request"] and fast["request"]["dryRun"] is True
    assert parse_review_request(body, fast=False).name == "late"


def _go_body(**fields: Any) -> bytes:
    request: dict[str, Any] = {"uid": "u", "kind": {}, "resource": {}, "operation": "CREATE", "userInfo": {}}
    request.update(fields)
    request.setdefault("object", {"data": "x" * 20_000})
    request.update(oldObject=None, dryRun=False, options=None)
    document = {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request}
    return json.dumps(document, separators=(",", ":")).encode()


def test_what_the_docs_say_falls_back_and_what_does_not() -> None:
    with mock.patch.object(_review_reader, "_SMALL_BYTES", 16 << 10):
        assert read_review_fields(_go_body()) is not None
        assert read_review_fields(_go_body(object={})) is None  # under 16 KiB: json.loads is cheaper
        assert (
            read_review_fields(_go_body(userInfo={"extra": {"k": ["v" * 70_000]}})) is None
        )  # prefix > 64 KiB
        pretty = json.dumps(json.loads(_go_body()), indent=2).encode()
        assert read_review_fields(pretty) is not None  # whitespace is fine
        with_response = json.loads(_go_body())
        with_response["response"] = {"uid": "u", "allowed": True}
        assert read_review_fields(json.dumps(with_response).encode()) is None
        # Not valid JSON inside "object": not flagged on this path (the app's parser refuses it).
        broken = _go_body().replace(b'"data":"xxx', b'"data":xxx', 1)
        assert read_review_fields(broken) is not None
        [problem] = parse_review_request(broken, fast=False).problems
        assert "JSON" in problem


def test_a_member_after_request_ending_in_dry_run_is_the_documented_blind_spot() -> None:
    # Found by the property test: request's closing brace sits in the bytes the reader skips.
    request = {"uid": "u", "kind": {}, "resource": {}, "operation": "CREATE", "userInfo": {},
               "object": {"data": "x" * 64}, "dryRun": False}  # fmt: skip
    body = json.dumps(
        {"kind": "AdmissionReview", "request": request, "response": {"allowed": True, "dryRun": None}}
    ).encode()
    fast = read_review_fields(body)
    assert fast is not None  # read fast: the shape check cannot see the skipped bytes
    assert fast["request"]["dryRun"] is None  # the response's, as the docs say
    assert parse_review_request(body, fast=False).dry_run is False
