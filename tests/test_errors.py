"""Exceptions are recorded by type, status and frames: never by their text unless opted in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.trace import StatusCode

from k8s_otel._errors import bounded, record_error, record_messages_from_env, safe_stacktrace
from recording import recording_provider

CANARY = "c2VjcmV0LXZhbHVl-canary"


class ApiError(Exception):
    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(f"({status})\nReason: {reason}\nHTTP response body: {body}")
        self.status = status
        self.reason = reason


def _raise(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


def _span_texts(memory) -> str:  # type: ignore[no-untyped-def]
    parts = []
    for span in memory.get_finished_spans():
        parts.append(repr(span.status.description))
        for event in span.events:
            parts.extend(str(value) for value in event.attributes.values())
    return "\n".join(parts)


def test_app_exception_text_stays_out_of_events_and_status() -> None:
    provider, memory = recording_provider()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        record_error(span, _raise(ValueError(f"invalid literal for int(): '{CANARY}'")))
    (finished,) = memory.get_finished_spans()
    event = finished.events[0]
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert "exception.message" not in event.attributes
    assert "test_errors.py" in event.attributes["exception.stacktrace"]
    assert event.attributes["exception.stacktrace"].rstrip().endswith("ValueError")
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.status.description == "ValueError"
    assert CANARY not in _span_texts(memory)


def test_api_error_is_recorded_by_status_even_with_messages_on() -> None:
    provider, memory = recording_provider()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        record_error(span, _raise(ApiError(404, "Not Found", CANARY)), record_message=True)
    (finished,) = memory.get_finished_spans()
    # The status and reason only, never the body: the type and the code are what a reader needs.
    assert "404" in finished.events[0].attributes["exception.message"]
    assert "ApiError" in (finished.status.description or "") and "404" in (finished.status.description or "")
    assert CANARY not in _span_texts(memory)


def test_messages_are_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not record_messages_from_env()
    monkeypatch.setenv("K8S_OTEL_RECORD_EXCEPTION_MESSAGES", "true")
    assert record_messages_from_env()
    provider, memory = recording_provider()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        record_error(span, _raise(KeyError("name")), record_message=record_messages_from_env())
    assert "'name'" in memory.get_finished_spans()[0].events[0].attributes["exception.message"]


def test_chained_causes_keep_frames_and_lose_text() -> None:
    try:
        try:
            raise KeyError(CANARY)
        except KeyError as inner:
            raise RuntimeError(CANARY) from inner
    except RuntimeError as outer:
        text = safe_stacktrace(outer)
    assert CANARY not in text
    assert text.index("KeyError") < text.index("direct cause") < text.index("RuntimeError")


def test_deep_recursion_is_bounded() -> None:
    def dive(n: int) -> None:
        if n == 0:
            raise ValueError(CANARY)
        dive(n - 1)

    try:
        dive(500)
    except ValueError as error:
        text = safe_stacktrace(error)
    assert len(text) < 20_000
    assert CANARY not in text


class _Hostile(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception fails")


@given(st.text(), st.one_of(st.none(), st.integers(), st.text()))
def test_record_error_never_raises_and_never_quotes(text: str, status: object) -> None:
    provider, memory = recording_provider()
    marker = f"{CANARY}{text}"
    error = _raise(
        ApiError(500, "x", marker) if isinstance(status, int) and status > 0 else ValueError(marker)
    )
    with provider.get_tracer("t").start_as_current_span("s") as span:
        record_error(span, error, status=status)
        record_error(span, _raise(_Hostile()), record_message=True)
    assert CANARY not in _span_texts(memory)


def test_bounded() -> None:
    assert bounded("abc", 2) == "ab"
    assert bounded("abc") == "abc"
