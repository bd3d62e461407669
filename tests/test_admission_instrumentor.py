"""The admission instrumentor's request filter: the route patterns and what looks like an AdmissionReview."""

from __future__ import annotations

import logging
import string
import time
from typing import Any, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.util._importlib_metadata import entry_points

from k8s_otel.instrumentation._admission import (
    AdmissionInstrumentor,
    RouteFilter,
    looks_like_admission,
    parse_routes,
)

ALL = RouteFilter()
paths = st.text(alphabet=string.ascii_letters + string.digits + "/-_.", max_size=40).map(lambda p: "/" + p)


def test_the_entry_point_is_registered() -> None:
    [entry_point] = entry_points(group="opentelemetry_instrumentor", name="k8s_admission")
    assert entry_point.load() is AdmissionInstrumentor


def test_unset_or_blank_allows_every_path() -> None:
    assert parse_routes(None) == parse_routes("") == parse_routes(" , ") == ALL
    assert ALL.allows("/anything")


def test_patterns() -> None:
    routes = parse_routes(" /validate , /mutate/* ,")
    assert routes.patterns == ("/validate", "/mutate/*")
    assert routes.allows("/validate") and routes.allows("/mutate/pods") and routes.allows("/mutate/a/b")
    assert not routes.allows("/validate/x") and not routes.allows("/healthz")
    assert routes.problems == ()


def test_bad_entries_are_reported_by_position_and_never_mean_all() -> None:
    routes = parse_routes("validate,/mutate")
    assert routes.patterns == ("/mutate",)
    [problem] = routes.problems
    assert "K8S_OTEL_ADMISSION_ROUTES" in problem and "entry 1" in problem and "'validate'" in problem
    nothing = parse_routes("validate")
    assert not nothing.allows("/validate") and not nothing.allows("/")


@given(st.text(max_size=200))
def test_any_text_parses_without_raising(text: str) -> None:
    routes = parse_routes(text)
    assert all(pattern.startswith("/") or pattern == "\x00" for pattern in routes.patterns)
    assert len(routes.problems) <= text.count(",") + 1


@given(st.lists(paths, min_size=1, max_size=5))
def test_every_listed_path_is_allowed(listed: list[str]) -> None:
    routes = parse_routes(",".join(listed))
    assert all(routes.allows(path) for path in listed)


@given(paths, paths)
def test_an_exact_entry_allows_only_itself(entry: str, other: str) -> None:
    routes = parse_routes(entry.replace("*", "").replace("?", "").replace("[", ""))
    if other != routes.patterns[0]:
        assert not routes.allows(other)


def test_what_looks_like_an_admission_review() -> None:
    assert looks_like_admission("POST", "application/json", "/validate", ALL)
    assert looks_like_admission("POST", "application/json; charset=utf-8", "/validate", ALL)
    assert looks_like_admission("POST", "Application/JSON", "/validate", ALL)
    assert looks_like_admission("POST", "application/merge-patch+json", "/validate", ALL)
    assert not looks_like_admission("GET", "application/json", "/validate", ALL)
    assert not looks_like_admission("POST", None, "/validate", ALL)
    assert not looks_like_admission("POST", "text/plain", "/validate", ALL)
    assert not looks_like_admission("POST", "application/jsonx", "/validate", ALL)
    assert not looks_like_admission("POST", "application/json", "/other", parse_routes("/validate"))


@given(st.text(max_size=20), st.one_of(st.none(), st.text(max_size=60)), paths)
def test_the_check_never_raises(method: str, content_type: Optional[str], path: str) -> None:
    assert looks_like_admission(method, content_type, path, ALL) in (True, False)


def wait_for_spans(memory: Any, count: int) -> Any:
    deadline = time.monotonic() + 5
    while len(memory.get_finished_spans()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return memory.get_finished_spans()


def test_instrument_and_uninstrument_a_real_flask_app(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import flask
    import requests

    from recording import recording_provider
    from webhook_support import review, wsgi_server

    monkeypatch.setenv("K8S_OTEL_ADMISSION_WEBHOOK_TYPE", "Mutating")
    provider, memory = recording_provider()
    instrumentor = AdmissionInstrumentor()
    instrumentor.instrument(tracer_provider=provider, paths=["/mutate"])
    try:
        app = flask.Flask(__name__)

        @app.post("/mutate")
        def mutate() -> Any:
            uid = flask.request.get_json()["request"]["uid"]
            answer = {"uid": uid, "allowed": True}
            return flask.jsonify(
                {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer}
            )

        with wsgi_server(app) as port:
            assert (
                requests.post(f"http://127.0.0.1:{port}/mutate", json=review(), timeout=5).status_code == 200
            )
            [span] = wait_for_spans(memory, 1)  # werkzeug ends it just after the client has the response
            assert span.attributes is not None and span.attributes["admission.webhook.type"] == "mutating"
            instrumentor.uninstrument()
            assert (
                requests.post(f"http://127.0.0.1:{port}/mutate", json=review(), timeout=5).status_code == 200
            )
            time.sleep(0.3)
            assert len(memory.get_finished_spans()) == 1  # off: the app as it was
    finally:
        instrumentor.uninstrument()
    monkeypatch.setenv("K8S_OTEL_ADMISSION_WEBHOOK_TYPE", "both")
    with caplog.at_level(logging.ERROR):
        instrumentor.instrument(tracer_provider=provider)
        instrumentor.uninstrument()
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "K8S_OTEL_ADMISSION_WEBHOOK_TYPE" in error and "'both'" in error
