"""Hostile and odd inputs to the webhook wrappers, called in-process: nothing raises, nothing leaks,
the app sees what it would see without us, every span ends."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from k8s_otel._admission import check_review_response, parse_review_request
from k8s_otel._errors import MAX_ATTRIBUTE_LENGTH
from k8s_otel._sampling import PerMillionSampler
from k8s_otel._trust import SampledParentBudget, TrustPolicy
from k8s_otel.webhook import ASGIMiddleware, WSGIMiddleware, admission_handler
from webhook_support import SECRET_VALUE, review

SAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
UNLIMITED = TrustPolicy("trust", budget=SampledParentBudget(math.inf))


@pytest.fixture
def recorded() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=PerMillionSampler(1_000_000))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider, memory
    provider.shutdown()


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"kind": value}
    return value


def allow(document: Mapping[str, Any]) -> dict[str, Any]:
    request = document.get("request") or {}
    uid = request.get("uid", "") if isinstance(request, Mapping) else ""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": True},
    }


class Hostile(Mapping[str, Any]):
    """A Mapping whose every lookup fails the way an unhashable key does."""

    def __getitem__(self, key: str) -> Any:
        raise TypeError("unhashable type: 'list'")

    def __iter__(self) -> Iterator[str]:
        return iter(["kind"])

    def __len__(self) -> int:
        return 1


# --- the handler decorator never raises from its own code, and its span always ends ----------


@pytest.mark.parametrize(
    "document",
    [
        {"apiVersion": "admission.k8s.io/v1", "kind": nested(993), "request": {"uid": "u"}},
        review(kind=nested(993)),
        {"apiVersion": "admission.k8s.io/v1", "kind": {(1, 2): "x"}, "request": {"uid": "u"}},
        review(userInfo={"groups": [[1], {"a": 1}, "ok"]}),
        Hostile(),
        {"request": Hostile()},
    ],
    ids=[
        "kind-993-deep",
        "request-kind-993-deep",
        "tuple-key",
        "odd-groups",
        "hostile-mapping",
        "hostile-request",
    ],
)
def test_the_handler_decorator_survives_any_review(
    recorded: tuple[TracerProvider, InMemorySpanExporter], document: Any
) -> None:
    provider, memory = recorded
    calls: list[Any] = []

    @admission_handler(tracer_provider=provider, webhook_type="validating", trust=UNLIMITED)
    def validate(review_: Any) -> dict[str, Any]:
        calls.append(review_)
        return {"apiVersion": "admission.k8s.io/v1", "kind": nested(993), "response": Hostile()}

    result = validate(document, headers={"traceparent": SAMPLED})
    assert calls == [document]
    assert result["response"].__class__ is Hostile
    [span] = memory.get_finished_spans()
    assert span.end_time is not None


def test_the_handler_runs_when_tracing_itself_is_broken() -> None:
    class Broken(TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("no tracer today")

    @admission_handler(tracer_provider=Broken())
    def validate(review_: Any) -> str:
        return "answered"

    assert validate(review(), headers={"traceparent": SAMPLED}) == "answered"


def test_parsers_never_raise_on_hostile_mappings() -> None:
    assert parse_review_request(Hostile()).problems
    assert check_review_response(parse_review_request(review()), Hostile()).problems
    deep = b'{"kind":' * 100_000 + b"{}" + b"}" * 100_000
    [problem] = parse_review_request(deep).problems
    assert "JSON" in problem


# --- exception text is opt-in -----------------------------------------------------------------


def _exploding(document: Any) -> Any:
    raise ValueError(f"invalid literal for int() with base 10: {SECRET_VALUE!r}")


def _recorded_text(span: ReadableSpan) -> str:
    return json.dumps(
        [
            dict(span.attributes or {}),
            [dict(e.attributes or {}) for e in span.events],
            span.status.description,
        ],
        default=str,
    )


@pytest.mark.parametrize("opt_in", [None, False, True, "env"])
def test_handler_exception_messages_are_opt_in(
    recorded: tuple[TracerProvider, InMemorySpanExporter], monkeypatch: pytest.MonkeyPatch, opt_in: Any
) -> None:
    provider, memory = recorded
    if opt_in == "env":
        monkeypatch.setenv("K8S_OTEL_RECORD_EXCEPTION_MESSAGES", "true")
        opt_in = None
    validate = admission_handler(_exploding, tracer_provider=provider, record_exception_messages=opt_in)
    with pytest.raises(ValueError, match=SECRET_VALUE):
        validate(review())
    [span] = memory.get_finished_spans()
    [event] = span.events
    assert event.name == "exception"
    assert event.attributes is not None and event.attributes["exception.type"] == "ValueError"
    assert "_exploding" in str(event.attributes["exception.stacktrace"])  # frames are kept
    assert span.status.status_code.name == "ERROR"
    shown = SECRET_VALUE in _recorded_text(span)
    assert shown is (opt_in is True or (monkeypatch is not None and opt_in is None and _env_on()))
    if not shown:
        assert span.status.description == "ValueError"


def _env_on() -> bool:
    import os

    return os.environ.get("K8S_OTEL_RECORD_EXCEPTION_MESSAGES") == "true"


# --- attribute sizes are bounded --------------------------------------------------------------


def test_every_attribute_from_input_is_bounded(recorded: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, memory = recorded
    huge = "n" * (5 << 20)
    document = review(
        uid=huge,
        name=huge,
        namespace=huge,
        operation=huge,
        subResource=huge,
        requestSubResource=huge,
        requestResource={"group": huge, "version": huge, "resource": huge},
        resource={"group": huge, "version": huge, "resource": huge},
        kind={"group": huge, "version": huge, "kind": huge},
        userInfo={"username": huge, "groups": [huge, *(["g"] * 1000)]},
    )
    body = json.dumps(document).encode()
    middleware = WSGIMiddleware(_answer(allow), tracer_provider=provider, record_user=True, trust=UNLIMITED)
    environ = _environ(body, path="/" + "p" * 100_000, query="q" * 100_000)
    environ["HTTP_USER_AGENT"] = huge
    environ["HTTP_HOST"] = huge
    b"".join(_call(middleware, environ))
    [span] = memory.get_finished_spans()
    assert span.name == "POST /" + "p" * 127
    for key, value in (span.attributes or {}).items():
        values = value if isinstance(value, tuple) else (value,)
        assert len(values) <= 64, key
        for item in values:
            assert not isinstance(item, str) or len(item) <= 3 * MAX_ATTRIBUTE_LENGTH, key


# --- what is inspected: only what looks like an AdmissionReview -------------------------------


class _Refusing(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("the middleware read a body it should have left alone")


def _answer(decide: Any) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        try:
            payload = json.dumps(decide(json.loads(stream.read() or b"{}"))).encode()
        except AssertionError:
            raise
        except Exception:
            payload = b"{}"
        start_response("200 OK", [("Content-Type", "application/json")])
        return [payload]

    return app


def _environ(body: bytes, *, method: str = "POST", path: str = "/validate", query: str = "timeout=10s",
             content_type: str = "application/json", stream: Any = None) -> dict[str, Any]:  # fmt: skip
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_TRACEPARENT": SAMPLED,
        "wsgi.input": stream if stream is not None else io.BytesIO(body),
        "wsgi.url_scheme": "https",
    }


def _call(middleware: Any, environ: dict[str, Any]) -> list[bytes]:
    result = middleware(environ, lambda status, headers, exc_info=None: None)
    try:
        return list(result)
    finally:
        getattr(result, "close", lambda: None)()


def _no_read_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no"]


@pytest.mark.parametrize(
    ("method", "path", "content_type", "problem"),
    [
        ("POST", "/other", "application/json", None),  # not one of `paths`
        ("PUT", "/validate", "application/json", None),
        (
            "POST",
            "/validate",
            "text/plain",
            "request Content-Type is 'text/plain', not application/json: not inspected",
        ),
        ("POST", "/validate", "", "request has no Content-Type, not application/json: not inspected"),
    ],
)
def test_only_admission_reviews_are_read(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
    method: str,
    path: str,
    content_type: str,
    problem: Any,
) -> None:
    provider, memory = recorded
    middleware = WSGIMiddleware(_no_read_app, tracer_provider=provider, paths={"/validate"}, trust=UNLIMITED)
    body = json.dumps(review()).encode()
    environ = _environ(body, method=method, path=path, content_type=content_type, stream=_Refusing())
    assert _call(middleware, environ) == [b"no"]
    [span] = memory.get_finished_spans()
    problems = (span.attributes or {}).get("admission.problems")
    if problem is None:
        assert problems is None
    else:  # the 404 is listed too: this is the webhook's route
        assert problems is not None and problems[0] == problem
    assert "UID" not in (span.attributes or {})


def test_a_path_filter_function_and_a_broken_one(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, memory = recorded
    body = json.dumps(review()).encode()
    for paths, read in ((lambda p: p.startswith("/val"), True), (lambda p: 1 / 0, False)):
        middleware = WSGIMiddleware(_answer(allow), tracer_provider=provider, paths=paths, trust=UNLIMITED)
        _call(middleware, _environ(body))
        span = memory.get_finished_spans()[-1]
        assert ("UID" in (span.attributes or {})) is read
    with pytest.raises(ValueError, match=r"paths.*'/validate'"):  # the option, and the value refused
        WSGIMiddleware(_answer(allow), paths="/validate")


def _asgi_app(received: list[bytes]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def _scope(content_type: bytes = b"application/json", method: str = "POST") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": "/validate",
        "query_string": b"timeout=10s",
        "headers": [(b"content-type", content_type), (b"traceparent", SAMPLED.encode())],
    }


def _run_asgi(middleware: Any, scope: Any, messages: list[dict[str, Any]]) -> None:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        return None

    asyncio.run(middleware(scope, receive, send))


def test_an_asgi_disconnect_has_its_own_problem(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, memory = recorded
    received: list[bytes] = []
    middleware = ASGIMiddleware(_asgi_app(received), tracer_provider=provider, trust=UNLIMITED)
    _run_asgi(middleware, _scope(), [{"type": "http.request", "body": b'{"api', "more_body": True}])
    [span] = memory.get_finished_spans()
    assert (span.attributes or {})["admission.problems"][0] == (
        "the client disconnected before the request body was complete: not inspected"
    )
    assert received == [b'{"api', b""]  # the app got the same messages, the disconnect included


def test_asgi_wrong_content_type_is_not_buffered(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, memory = recorded
    pulled: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        pulled.append(1)
        return {"type": "http.request", "body": b"x"}

    async def send(message: Any) -> None:
        return None

    middleware = ASGIMiddleware(app, tracer_provider=provider, trust=UNLIMITED)
    asyncio.run(middleware(_scope(b"text/plain"), receive, send))
    assert pulled == []
    [span] = memory.get_finished_spans()
    assert "text/plain" in (span.attributes or {})["admission.problems"][0]


# --- response checks are bounded --------------------------------------------------------------


def test_response_checks_never_echo_a_huge_value(
    recorded: tuple[TracerProvider, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    provider, memory = recorded
    huge = "K" * 1_000_000

    def bad(document: Any) -> dict[str, Any]:
        return {
            "apiVersion": huge,
            "kind": huge,
            "response": {"uid": "Z" * 1_000_000, "allowed": True, "patchType": huge},
        }

    middleware = WSGIMiddleware(
        _answer(bad), tracer_provider=provider, webhook_type="validating", trust=UNLIMITED
    )
    with caplog.at_level(logging.WARNING, logger="k8s_otel.webhook"):
        _call(middleware, _environ(json.dumps(review(uid=huge)).encode()))
    [record] = [r for r in caplog.records if r.name == "k8s_otel.webhook"]
    assert len(record.getMessage()) < 2000
    [span] = memory.get_finished_spans()
    problems = (span.attributes or {})["admission.problems"]
    assert len(problems) == 3
    assert all(len(p) < 300 for p in problems)
    assert len(str((span.attributes or {})["response.patchType"])) <= 64


# --- issue 14: the join keys ------------------------------------------------------------------


def _recorded_attributes(
    provider: TracerProvider, memory: InMemorySpanExporter, document: Any
) -> Mapping[str, Any]:
    middleware = WSGIMiddleware(_answer(allow), tracer_provider=provider, trust=UNLIMITED)
    _call(middleware, _environ(json.dumps(document).encode()))
    return memory.get_finished_spans()[-1].attributes or {}


@pytest.mark.parametrize(
    ("request_fields", "resource", "subresource", "matched"),
    [
        # A rule on apps/v1 serving a request to apps/v1beta2: the apiserver's span has the request's own.
        (
            {
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "requestResource": {"group": "apps", "version": "v1beta2", "resource": "deployments"},
            },
            "apps/v1beta2, Resource=deployments",
            "",
            "apps/v1, Resource=deployments",
        ),
        # A subresource request: the scale of a Deployment, matched through a rule on apps/v1.
        (
            {
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "subResource": "scale",
                "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "requestSubResource": "scale",
            },
            "apps/v1, Resource=deployments",
            "scale",
            "apps/v1, Resource=deployments",
        ),
        # v1beta1 from an older server: no requestResource, so the matched resource is the request's.
        (
            {
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "subResource": "status",
                "requestResource": None,
                "requestSubResource": None,
            },
            "/v1, Resource=pods",
            "status",
            "/v1, Resource=pods",
        ),
    ],
    ids=["conversion", "subresource", "v1beta1-without-requestResource"],
)
def test_resource_and_subresource_are_the_requests_own(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
    request_fields: dict[str, Any],
    resource: str,
    subresource: str,
    matched: str,
) -> None:
    document = review(**request_fields)
    for key in [k for k, v in request_fields.items() if v is None]:
        del document["request"][key]
    attributes = _recorded_attributes(*recorded, document)
    assert attributes["resource"] == resource
    assert attributes["subresource"] == subresource  # always set, "" when there is none
    assert attributes["request.resource"] == matched


# --- issue 14: unsampled streams keep their context; disconnects are not errors ---------------


def test_unsampled_streams_keep_the_context_until_close() -> None:
    from opentelemetry import trace

    provider = TracerProvider(sampler=PerMillionSampler(0))
    parents: list[int] = []

    def streaming(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "application/json")])

        def body() -> Iterator[bytes]:
            for _ in range(3):
                parents.append(trace.get_current_span().get_span_context().trace_id)
                yield b"x"

        return body()

    unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    environ = _environ(b"{}")
    environ["HTTP_TRACEPARENT"] = unsampled
    middleware = WSGIMiddleware(streaming, tracer_provider=provider)
    assert _call(middleware, environ) == [b"x"] * 3
    assert parents == [0x4BF92F3577B34DA6A3CE929D0E0E4736] * 3  # the apiserver's trace, though not sampled
    assert not trace.get_current_span().get_span_context().is_valid  # detached on close


def test_an_aborted_wsgi_stream_is_a_disconnect_not_an_error(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, memory = recorded

    def streaming(environ: dict[str, Any], start_response: Any) -> Any:
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/json")])
        return iter([b"{", b'"a"', b":1}"])

    middleware = WSGIMiddleware(streaming, tracer_provider=provider, trust=UNLIMITED)
    result: Any = middleware(_environ(json.dumps(review()).encode()), lambda *a: None)
    iterator = iter(result)
    next(iterator)
    del iterator  # the server stops iterating (its write failed) and closes the response
    result.close()
    [span] = memory.get_finished_spans()
    assert span.status.status_code.name == "UNSET"
    assert not span.events
    assert "error.type" not in (span.attributes or {})
    assert (span.attributes or {})["admission.problems"] == (
        "the client disconnected before the response was complete",
    )


def test_an_aborted_asgi_stream_is_a_disconnect_not_an_error(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, memory = recorded

    async def streaming(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        if (await receive())["type"] == "http.disconnect":  # as Starlette's StreamingResponse listens
            return

    middleware = ASGIMiddleware(streaming, tracer_provider=provider, trust=UNLIMITED)
    _run_asgi(middleware, _scope(), [{"type": "http.request", "body": json.dumps(review()).encode()}])
    [span] = memory.get_finished_spans()
    assert span.status.status_code.name == "UNSET"
    assert (span.attributes or {})["admission.problems"] == (
        "the client disconnected before the response was complete",
    )


def test_an_asgi_send_to_a_gone_client_is_a_disconnect(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, memory = recorded

    async def streaming(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": json.dumps(review()).encode()}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            raise ConnectionResetError("gone")  # ASGI 2.4: an OSError

    middleware = ASGIMiddleware(streaming, tracer_provider=provider, trust=UNLIMITED)
    with pytest.raises(ConnectionResetError):
        asyncio.run(middleware(_scope(), receive, send))
    [span] = memory.get_finished_spans()
    assert span.status.status_code.name == "UNSET"
    assert (span.attributes or {})["admission.problems"] == (
        "the client disconnected before the response was complete",
    )


# --- issue 14: coroutine handlers -------------------------------------------------------------


def test_async_handlers_end_their_span_after_the_coroutine(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    from opentelemetry import trace

    provider, memory = recorded
    inside: list[bool] = []

    @admission_handler(tracer_provider=provider, webhook_type="validating", trust=UNLIMITED)
    async def validate(document: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        inside.append(trace.get_current_span().is_recording())
        if document["request"]["name"] == "explode":
            raise RuntimeError("policy engine down")
        return allow(document)

    assert asyncio.iscoroutinefunction(validate)
    answer = asyncio.run(validate(review(), headers={"traceparent": SAMPLED}))
    assert answer["response"]["allowed"] is True
    with pytest.raises(RuntimeError):
        asyncio.run(validate(review(name="explode")))
    served, exploded = memory.get_finished_spans()
    assert inside == [True, True]
    assert served.attributes is not None and served.attributes["response.allowed"] is True
    assert "admission.problems" not in served.attributes
    assert served.end_time is not None and served.end_time - served.start_time >= 10_000_000
    assert exploded.status.status_code.name == "ERROR"


def test_flask_spans_are_named_after_the_route_without_a_request_hook(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    import flask

    from k8s_otel.webhook._flask import instrument_flask_app

    provider, memory = recorded
    app = flask.Flask("example")

    @app.post("/validate/<kind>")
    def validate(kind: str) -> Any:
        return allow(flask.request.get_json())

    instrument_flask_app(app, tracer_provider=provider, trust=UNLIMITED)
    assert not any(app.before_request_funcs.values())  # nothing runs per request when unsampled
    from werkzeug.test import EnvironBuilder

    for path in ("/validate/pods", "/nowhere"):
        builder = EnvironBuilder(path=path, method="POST", json=review(), headers={"traceparent": SAMPLED})
        _call(app.wsgi_app, builder.get_environ())
    routed, unrouted = memory.get_finished_spans()
    assert (routed.name, (routed.attributes or {})["http.route"]) == (
        "POST /validate/<kind>",
        "/validate/<kind>",
    )
    assert unrouted.name == "POST /nowhere"


@pytest.mark.parametrize(
    ("content_type", "json_like"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/merge-patch+json", True),
        ("text/json", False),
        ("application/jsonx", False),
        (None, False),
    ],
)
def test_json_content_types(content_type: Any, json_like: bool) -> None:
    from k8s_otel.webhook._core import is_json_content_type

    assert is_json_content_type(content_type) is json_like


def test_past_the_budget_the_webhook_span_is_a_root_with_a_link(
    recorded: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, memory = recorded
    budget = SampledParentBudget(2)
    middleware = WSGIMiddleware(
        _answer(allow), tracer_provider=provider, trust=TrustPolicy("trust", budget=budget)
    )
    for _ in range(3):
        _call(middleware, _environ(json.dumps(review()).encode()))
    first, second, third = memory.get_finished_spans()
    for span in (first, second):
        assert span.parent is not None and span.parent.span_id == 0x00F067AA0BA902B7 and not span.links
    assert third.parent is None  # a root, sampled by the webhook's own sampler (here: everything)
    assert [link.context.span_id for link in third.links] == [0x00F067AA0BA902B7]
    assert (third.attributes or {})["UID"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert budget.refused == 1
