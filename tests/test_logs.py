"""Trace ids in log records: the logging module, the webhook's warning, and the JSON formatter."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from k8s_otel._logs import (
    DEFAULT_LOGGING_FORMAT,
    JSONFormatter,
    apply_log_correlation,
    disable_log_correlation,
    enable_log_correlation,
)
from k8s_otel.webhook import WSGIMiddleware
from recording import recording_provider
from webhook_support import review, wsgi_server

FIELDS = ("otelTraceID", "otelSpanID", "otelTraceSampled", "otelServiceName", "trace_id", "span_id")


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected() -> Iterator[Callable[[str], Collect]]:
    attached: list[tuple[logging.Logger, Collect, int]] = []

    def attach(name: str) -> Collect:
        logger = logging.getLogger(name)
        handler = Collect()
        attached.append((logger, handler, logger.level))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        return handler

    enable_log_correlation()
    try:
        yield attach
    finally:
        disable_log_correlation()
        for logger, handler, level in attached:
            logger.removeHandler(handler)
            logger.setLevel(level)


def test_records_in_a_span_carry_its_ids_and_outside_empty_values(
    collected: Callable[[str], Collect],
) -> None:
    handler = collected("app")
    provider, _ = recording_provider()
    with provider.get_tracer("t").start_as_current_span("work") as span:
        logging.getLogger("app").info("inside")
    logging.getLogger("app").info("outside")
    inside, outside = handler.records
    context = span.get_span_context()
    assert inside.otelTraceID == inside.trace_id == f"{context.trace_id:032x}"  # type: ignore[attr-defined]
    assert inside.otelSpanID == inside.span_id == f"{context.span_id:016x}"  # type: ignore[attr-defined]
    assert inside.otelTraceSampled is True  # type: ignore[attr-defined]
    assert [getattr(outside, name) for name in FIELDS] == ["", "", False, "", "", ""]


def test_an_unsampled_remote_parent_is_still_named(collected: Callable[[str], Collect]) -> None:
    handler = collected("app")
    parent = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(0))
    with trace.use_span(NonRecordingSpan(parent)):
        logging.getLogger("app").warning("unsampled")
    [record] = handler.records
    assert record.trace_id == "0af7651916cd43dd8448eb211c80319c"  # type: ignore[attr-defined]
    assert record.otelTraceSampled is False  # type: ignore[attr-defined]


class BrokenSpan(NonRecordingSpan):
    def get_span_context(self) -> SpanContext:
        raise RuntimeError("broken tracing state")


def test_a_broken_tracing_state_never_stops_a_record(collected: Callable[[str], Collect]) -> None:
    handler = collected("app")
    with trace.use_span(BrokenSpan(trace.INVALID_SPAN_CONTEXT)):
        logging.getLogger("app").error("still logged")
    [record] = handler.records
    assert record.getMessage() == "still logged"
    assert record.trace_id == "" and record.otelTraceSampled is False  # type: ignore[attr-defined]


def test_enabling_twice_wraps_once_and_disabling_restores() -> None:
    before = logging.getLogRecordFactory()
    enable_log_correlation()
    ours = logging.getLogRecordFactory()
    enable_log_correlation()
    assert logging.getLogRecordFactory() is ours is not before
    disable_log_correlation()
    assert logging.getLogRecordFactory() is before
    apply_log_correlation(False)
    assert logging.getLogRecordFactory() is before


def test_the_contrib_format_renders_with_our_fields(collected: Callable[[str], Collect]) -> None:
    handler = collected("app")
    logging.getLogger("app").info("plain")
    line = logging.Formatter(DEFAULT_LOGGING_FORMAT).format(handler.records[0])
    assert "[trace_id= span_id= resource.service.name= trace_sampled=False] - plain" in line


def test_the_json_formatter_writes_a_line_a_backend_links_on(collected: Callable[[str], Collect]) -> None:
    handler = collected("kopf.objects")
    provider, _ = recording_provider()
    with provider.get_tracer("t").start_as_current_span("reconcile") as span:
        logging.getLogger("kopf.objects").info(
            "Handler %r succeeded.", "create_fn", extra={"k8s_ref": {"name": "ex1"}}
        )
    line = JSONFormatter(extra_fields=("k8s_ref",)).format(handler.records[0])
    document = json.loads(line)
    assert document["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert document["span_id"] == f"{span.get_span_context().span_id:016x}"
    assert document["trace_sampled"] is True
    assert document["message"] == "Handler 'create_fn' succeeded."
    assert document["logger"] == "kopf.objects" and document["level"] == "INFO"
    assert document["time"].endswith("Z")
    assert document["k8s_ref"] == {"name": "ex1"}
    assert "\n" not in line


@settings(max_examples=50, deadline=None)
@given(message=st.text(), args=st.lists(st.text() | st.integers() | st.none(), max_size=3))
def test_the_json_formatter_always_writes_one_json_line(message: str, args: list[Any]) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, message + " %s" * len(args), tuple(args), None)
    line = JSONFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line)["trace_id"] == ""


def test_the_webhook_warning_about_a_rejected_response_carries_the_trace(
    collected: Callable[[str], Collect],
) -> None:
    handler = collected("k8s_otel.webhook")
    provider, memory = recording_provider()

    def bad_uid(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/json")])
        body = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": "123", "allowed": True},
        }
        return [json.dumps(body).encode()]

    with wsgi_server(WSGIMiddleware(bad_uid, tracer_provider=provider)) as port:
        reply = requests.post(f"http://127.0.0.1:{port}/validate", json=review(), timeout=5)
    assert reply.status_code == 200
    [span] = memory.get_finished_spans()
    [warning] = [r for r in handler.records if "would reject" in r.getMessage()]
    assert warning.trace_id == f"{span.context.trace_id:032x}"  # type: ignore[attr-defined]
    assert warning.span_id == f"{span.context.span_id:016x}"  # type: ignore[attr-defined]


def test_configure_log_correlation_with_the_json_formatter(otlp_receiver: Any) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "K8S_OTEL_"))}
    env["PYTHONPATH"] = str(tests)
    result = subprocess.run(
        [sys.executable, "-m", "apps.configured", otlp_receiver.endpoint],
        env=env,
        cwd=str(tests),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    inside, outside, roots = result.stdout.splitlines()
    [span] = otlp_receiver.wait_for_spans(1, timeout=5)
    assert json.loads(inside)["trace_id"] == span.trace_id
    assert json.loads(inside)["span_id"] == span.span_id
    assert json.loads(inside)["service.name"] == "configured"
    assert json.loads(outside)["trace_id"] == "" and json.loads(outside)["trace_sampled"] is False
    assert roots == "root handlers: 0"  # the argument adds fields only: no basicConfig


@pytest.mark.parametrize(
    ("level", "log_format", "expected"),
    [
        # Unset: info and the contrib format (docs/logging.md shows it).
        (
            None,
            None,
            [
                "INFO [app] [probes.py:",
                "trace_id= span_id= resource.service.name=svc trace_sampled=False] - info",
            ],
        ),
        ("warning", "%(levelname)s|%(otelServiceName)s|%(message)s", ["WARNING|svc|warning"]),
    ],
)
def test_log_correlation_from_the_env_calls_basic_config_with_level_and_format(
    level: Any, log_format: Any, expected: list[str]
) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "K8S_OTEL_"))}
    env.update({"OTEL_PYTHON_LOG_CORRELATION": "true", "OTEL_SERVICE_NAME": "svc"})
    if level:
        env["OTEL_PYTHON_LOG_LEVEL"] = level
    if log_format:
        env["OTEL_PYTHON_LOG_FORMAT"] = log_format
    import subprocess_scripts

    result = subprocess_scripts.run("probes", "log_levels", env=env)
    assert result.returncode == 0, result.stderr
    lines = [
        line for line in result.stderr.splitlines() if "debug" in line or "info" in line or "warning" in line
    ]
    assert all(part in lines[0] for part in expected), result.stderr
    assert not any(line.endswith("- debug") or line.endswith("|debug") for line in lines)
    assert len(lines) == (2 if level is None else 1), result.stderr
