"""FastAPI and Starlette: ``instrument_fastapi_app(app)`` (the ``k8s-otel[fastapi]`` extra)."""

from __future__ import annotations

import logging
from typing import Any, Optional

from opentelemetry import trace

from k8s_otel._exceptions import InvalidArgumentError
from k8s_otel._trust import TrustArgument
from k8s_otel.webhook._asgi import ASGIMiddleware
from k8s_otel.webhook._core import DEFAULT_MAX_BODY_BYTES, PathFilter, WebhookOptions

__all__ = ["instrument_fastapi_app"]

_logger = logging.getLogger("k8s_otel.webhook")

_INSTRUMENTED = "_k8s_otel_instrumented"


def instrument_fastapi_app(
    app: Any,
    *,
    tracer_provider: Optional[trace.TracerProvider] = None,
    trust: TrustArgument = "trust",
    webhook_type: Optional[str] = None,
    record_user: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    record_exception_messages: Optional[bool] = None,
    paths: PathFilter = None,
    fast_reader: bool = True,
) -> None:
    """Add ASGIMiddleware (the same options) to a FastAPI or Starlette app.

    Returns None and instruments in place, as contrib's ``FastAPIInstrumentor.instrument_app``
    does; a second call on the same app logs a warning and changes nothing. The options are
    checked here, not when Starlette builds its middleware stack on the first request.

    The span is named after the matched route (``POST /validate/{kind}``) once routing is done.
    Recent FastAPI releases make a server span of their own whenever OpenTelemetry is installed;
    ours replaces it (it carries the admission attributes), so FastAPI's tracing is switched off
    here: one SERVER span per request. Its metrics and logs are left as they are.
    """
    if not callable(getattr(app, "add_middleware", None)):
        raise InvalidArgumentError(
            f"instrument_fastapi_app(): app must be a FastAPI or Starlette app, not a {type(app).__name__}",
            argument="app",
        )
    options = WebhookOptions(
        tracer_provider=tracer_provider,
        trust=trust,
        webhook_type=webhook_type,
        record_user=record_user,
        max_body_bytes=max_body_bytes,
        record_exception_messages=record_exception_messages,
        paths=paths,
        fast_reader=fast_reader,
    )
    if getattr(app, _INSTRUMENTED, False):
        _logger.warning("k8s_otel: this FastAPI/Starlette app is already instrumented; left as it is")
        return
    native = getattr(app, "_telemetry", None)
    if isinstance(native, dict) and native.get("tracing"):
        native["tracing"] = False  # the dict FastAPI's NativeTelemetry reads on every request
        _logger.debug("k8s_otel: FastAPI's own server span is off; k8s_otel's admission span replaces it")
    app.add_middleware(ASGIMiddleware, **vars(options))
    setattr(app, _INSTRUMENTED, True)
