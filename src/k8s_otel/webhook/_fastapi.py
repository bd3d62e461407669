"""FastAPI and Starlette: ``instrument_fastapi_app(app)`` (the ``k8s-otel[fastapi]`` extra)."""

from __future__ import annotations

import logging
from typing import Any

from k8s_otel.webhook._asgi import ASGIMiddleware

__all__ = ["instrument_fastapi_app"]

_logger = logging.getLogger("k8s_otel.webhook")


def instrument_fastapi_app(app: Any, **options: Any) -> None:
    """Add ASGIMiddleware (same options) to a FastAPI or Starlette app.

    The span is named after the matched route (``POST /validate/{kind}``) once routing is done.
    Recent FastAPI releases make a server span of their own whenever OpenTelemetry is installed;
    ours replaces it (it carries the admission attributes), so FastAPI's tracing is switched off
    here: one SERVER span per request. Its metrics and logs are left as they are.
    """
    native = getattr(app, "_telemetry", None)
    if isinstance(native, dict) and native.get("tracing"):
        native["tracing"] = False  # the dict FastAPI's NativeTelemetry reads on every request
        _logger.debug("k8s_otel: FastAPI's own server span is off; k8s_otel's admission span replaces it")
    app.add_middleware(ASGIMiddleware, **options)
