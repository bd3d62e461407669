"""Trace ids in log records: every record made in a span says which trace and span it belongs to.

``enable_log_correlation()`` (or ``configure(log_correlation=True)``, or
``OTEL_PYTHON_LOG_CORRELATION=true``) installs a log record factory, which the logging module calls
for every record of every logger: kopf's per-object loggers, the webhook's warnings and the
application's own. The fields are the contrib logging instrumentation's (``otelTraceID``,
``otelSpanID``, ``otelTraceSampled``, ``otelServiceName``), so existing formats keep working, and
``trace_id``/``span_id`` for JSON formatters. Outside a span the ids are empty strings and
``otelTraceSampled`` is False; the factory never raises.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from opentelemetry import trace

from k8s_otel._attributes import SERVICE_NAME

__all__ = [
    "DEFAULT_LOGGING_FORMAT",
    "apply_log_correlation",
    "LOG_CORRELATION_ENV",
    "JSONFormatter",
    "disable_log_correlation",
    "enable_log_correlation",
    "log_correlation_from_env",
]

LOG_CORRELATION_ENV = "OTEL_PYTHON_LOG_CORRELATION"
LOG_FORMAT_ENV = "OTEL_PYTHON_LOG_FORMAT"
LOG_LEVEL_ENV = "OTEL_PYTHON_LOG_LEVEL"

DEFAULT_LOGGING_FORMAT = (
    "%(asctime)s %(levelname)s [%(name)s] [%(filename)s:%(lineno)d] [trace_id=%(otelTraceID)s "
    "span_id=%(otelSpanID)s resource.service.name=%(otelServiceName)s trace_sampled=%(otelTraceSampled)s] "
    "- %(message)s"
)
"""The contrib logging instrumentation's format, used when ``OTEL_PYTHON_LOG_FORMAT`` is unset."""

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

_lock = threading.Lock()
_previous_factory: Optional[Callable[..., logging.LogRecord]] = None
_service: list[Any] = [None, "", 0.0]  # [provider the name was read from, service.name, next look]
_final_service: list[Optional[str]] = [None]  # the global provider is set once: then this never changes


def log_correlation_from_env() -> bool:
    """``OTEL_PYTHON_LOG_CORRELATION=true`` (case-insensitive), as the contrib instrumentation reads it."""
    return os.environ.get(LOG_CORRELATION_ENV, "false").strip().lower() == "true"


def _service_name() -> str:
    """``service.name`` of the global provider; final once a real provider is installed (set once)."""
    provider = trace.get_tracer_provider()
    if provider is not _service[0]:
        resource = getattr(provider, "resource", None)
        name = resource.attributes.get(SERVICE_NAME, "") if resource is not None else ""
        _service[0], _service[1] = provider, str(name)
        if not isinstance(provider, trace.ProxyTracerProvider):
            _final_service[0] = str(name)
    return str(_service[1])


def _make_factory(previous: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    get_current_span = trace.get_current_span
    final = _final_service

    def correlated_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            context = get_current_span().get_span_context()
            if context.is_valid:
                trace_id = f"{context.trace_id:032x}"
                span_id = f"{context.span_id:016x}"
                sampled = context.trace_flags.sampled
            else:
                trace_id = span_id = ""
                sampled = False
            service = final[0]
            if service is None:  # no provider installed yet: look again at most once a second
                if record.created >= _service[2]:
                    _service[2] = record.created + 1.0
                    service = _service_name()
                else:
                    service = _service[1]
        except Exception:  # a record must always be made, whatever the tracing state
            trace_id = span_id = service = ""
            sampled = False
        record.otelTraceID = record.trace_id = trace_id
        record.otelSpanID = record.span_id = span_id
        record.otelTraceSampled = sampled
        record.otelServiceName = service
        return record

    correlated_record.k8s_otel_log_correlation = True  # type: ignore[attr-defined]
    return correlated_record


def enable_log_correlation(*, set_logging_format: bool = False) -> None:
    """Add the trace fields to every log record from now on. Idempotent.

    ``set_logging_format`` does what the contrib instrumentation does for
    ``OTEL_PYTHON_LOG_CORRELATION=true``: ``logging.basicConfig`` with ``OTEL_PYTHON_LOG_FORMAT``
    (default ``DEFAULT_LOGGING_FORMAT``) and ``OTEL_PYTHON_LOG_LEVEL`` (default info), which is a
    no-op when the root logger already has handlers.
    """
    global _previous_factory
    with _lock:
        current = logging.getLogRecordFactory()
        if not getattr(current, "k8s_otel_log_correlation", False):
            _previous_factory = current
            logging.setLogRecordFactory(_make_factory(current))
    if set_logging_format:
        level = _LEVELS.get(os.environ.get(LOG_LEVEL_ENV, "").strip().lower(), logging.INFO)
        logging.basicConfig(format=os.environ.get(LOG_FORMAT_ENV) or DEFAULT_LOGGING_FORMAT, level=level)


def apply_log_correlation(log_correlation: Optional[bool]) -> None:
    """What ``configure(log_correlation=...)`` does: True enables, None follows the environment.

    The environment path keeps the contrib meaning of ``OTEL_PYTHON_LOG_CORRELATION=true``, format
    included; the argument only adds the fields, leaving the application's logging set-up alone.
    """
    try:
        if log_correlation:
            enable_log_correlation()
        elif log_correlation is None and log_correlation_from_env():
            enable_log_correlation(set_logging_format=True)
    except Exception:  # logging set-up must not stop tracing, nor the application
        logging.getLogger("k8s_otel.logs").exception("k8s_otel: log correlation could not be enabled")


def disable_log_correlation() -> None:
    """Put back the factory that was there before, if ours is still the current one."""
    global _previous_factory
    with _lock:
        current = logging.getLogRecordFactory()
        if getattr(current, "k8s_otel_log_correlation", False) and _previous_factory is not None:
            logging.setLogRecordFactory(_previous_factory)
            _previous_factory = None


def _message(record: logging.LogRecord) -> str:
    """``record.getMessage()``, or the raw message and arguments when they do not format."""
    try:
        return record.getMessage()
    except Exception:  # a bad %-format in a log call must not lose the line
        return f"{record.msg!s} {record.args!r}"


class JSONFormatter(logging.Formatter):
    """One JSON object per line, with the trace fields a backend links on (``trace_id``, ``span_id``).

    ``{"time": "2026-12-01T20:00:00.123456Z", "level": "INFO", "logger": "kopf.objects",
    "message": "...", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
    "trace_sampled": true, "service.name": "my-operator"}``; ``extra_fields`` names further record
    attributes to copy (kopf's ``k8s_skip`` and the like are left out unless asked for).
    """

    def __init__(self, *, extra_fields: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.extra_fields = extra_fields

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
            "trace_id": getattr(record, "trace_id", ""),
            "span_id": getattr(record, "span_id", ""),
            "trace_sampled": bool(getattr(record, "otelTraceSampled", False)),
            SERVICE_NAME: getattr(record, "otelServiceName", ""),
        }
        for name in self.extra_fields:
            if hasattr(record, name):
                document[name] = getattr(record, name)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str, ensure_ascii=False)
