"""Property tests through the real WSGI and ASGI middleware around real apps: for AdmissionReview
bodies with random values at every field path, nothing raises from our code, the app sees exactly
the bytes that were sent, every span ends, and no canary (from the admitted object, or from an
exception the app raises) appears in a span or a log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from k8s_otel import _review_reader
from k8s_otel._sampling import PerMillionSampler
from k8s_otel._trust import SampledParentBudget, TrustPolicy
from k8s_otel.webhook import ASGIMiddleware, WSGIMiddleware
from review_strategies import reviews

OBJECT_CANARY = "c2VjcmV0LW9iamVjdC1jYW5hcnk"  # a Secret's data
ERROR_CANARY = "ZXJyb3ItdGV4dC1jYW5hcnk"  # what an app exception quotes
SAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))

MEMORY = InMemorySpanExporter()
PROVIDER = TracerProvider(sampler=PerMillionSampler(1_000_000))
PROVIDER.add_span_processor(SimpleSpanProcessor(MEMORY))
POLICY = TrustPolicy("trust", budget=SampledParentBudget(math.inf))


@pytest.fixture(autouse=True, scope="module")
def _fast_reader_for_small_bodies() -> Iterator[None]:
    """The generated bodies are small; let the fast reader take them too (normally: 16 KiB and up)."""
    with mock.patch.object(_review_reader, "_SMALL_BYTES", 0):
        yield


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter().format(record))


@pytest.fixture(scope="module")
def log_lines() -> Iterator[list[str]]:
    handler = _Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


answers = st.sampled_from(["echo", "garbage", "raise", "patch", "empty"])


def _answer(kind: str, body: bytes) -> bytes:
    if kind == "raise":
        raise ValueError(f"invalid literal for int() with base 10: {ERROR_CANARY!r}")
    if kind == "garbage":
        return b"\xff not json " + body[:10]
    if kind == "empty":
        return b""
    try:
        uid = json.loads(body)["request"]["uid"]
    except Exception:
        uid = None
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if kind == "patch":
        response.update(patchType="JSONPatch", patch="W10=")
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
    ).encode()


def _check_recorded(log_lines: list[str]) -> None:
    spans = MEMORY.get_finished_spans()
    MEMORY.clear()
    assert len(spans) == 1 and spans[0].end_time is not None
    [span] = spans
    recorded = json.dumps(
        [dict(span.attributes or {}), [(e.name, dict(e.attributes or {})) for e in span.events], span.status.description, span.name],
        default=str,
    )  # fmt: skip
    shown = recorded + "\n".join(log_lines)
    log_lines.clear()
    assert OBJECT_CANARY not in shown
    assert ERROR_CANARY not in shown


@SETTINGS
@given(case=reviews(canary=OBJECT_CANARY), answer=answers, chunked=st.booleans(), content_type=st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", ""]))  # fmt: skip
def test_wsgi_any_review(log_lines: list[str], case: tuple[bytes, bool], answer: str, chunked: bool,
                         content_type: str) -> None:  # fmt: skip
    body, _ = case
    seen: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        seen.append(
            stream.read()
            if environ.get("wsgi.input_terminated")
            else stream.read(int(environ["CONTENT_LENGTH"]))
        )
        payload = _answer(answer, seen[0])
        start_response("200 OK", [("Content-Type", "application/json")])
        return [payload[:7], payload[7:]]

    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/validate", "CONTENT_TYPE": content_type,
        "HTTP_TRACEPARENT": SAMPLED, "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "https",
    }  # fmt: skip
    if chunked:
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = str(len(body))
    middleware = WSGIMiddleware(app, tracer_provider=PROVIDER, trust=POLICY, webhook_type="mutating")
    try:
        result: Any = middleware(environ, lambda *args: None)
    except ValueError as error:
        assert answer == "raise" and ERROR_CANARY in str(error)  # the app's own exception, unchanged
    else:
        b"".join(result)
        result.close()
    assert seen == [body]
    _check_recorded(log_lines)


@SETTINGS
@given(case=reviews(canary=OBJECT_CANARY), answer=answers, cuts=st.lists(st.integers(0, 10_000), max_size=4))
def test_asgi_any_review(
    log_lines: list[str], case: tuple[bytes, bool], answer: str, cuts: list[int]
) -> None:
    body, _ = case
    points = sorted({c % (len(body) + 1) for c in cuts})
    parts = [body[a:b] for a, b in zip([0, *points], [*points, len(body)])]
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)
    ]
    seen: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        data = b""
        while True:
            message = await receive()
            data += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append(data)
        payload = _answer(answer, data)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": payload})

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        return None

    scope = {"type": "http", "method": "POST", "path": "/validate", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"traceparent", SAMPLED.encode())]}  # fmt: skip
    middleware = ASGIMiddleware(app, tracer_provider=PROVIDER, trust=POLICY, webhook_type="validating")
    try:
        asyncio.run(middleware(scope, receive, send))
    except ValueError as error:
        assert answer == "raise" and ERROR_CANARY in str(error)
    assert seen == [body]
    _check_recorded(log_lines)
