"""Flask: ``instrument_flask_app(app)`` (the ``k8s-otel[flask]`` extra)."""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from k8s_otel._exceptions import InvalidArgumentError
from k8s_otel._extras import missing_extra

try:
    import flask
except ImportError as error:
    raise missing_extra("flask", error) from None

from opentelemetry import trace

from k8s_otel._trust import TrustArgument
from k8s_otel.webhook._core import DEFAULT_MAX_BODY_BYTES, PathFilter
from k8s_otel.webhook._wsgi import WSGIMiddleware

__all__ = ["instrument_flask_app"]

_logger = logging.getLogger("k8s_otel.webhook")

_INSTRUMENTED = "_k8s_otel_instrumented"


def _route_matcher(app: flask.Flask) -> Callable[[dict[str, Any]], Optional[str]]:
    def route_of(environ: dict[str, Any]) -> Optional[str]:
        """The rule Flask matches for this request (asked of its url_map, sampled requests only)."""
        try:
            rule, _ = app.url_map.bind_to_environ(environ).match(return_rule=True)
        except Exception:  # no route (404/405) or a redirect: the path name stays
            return None
        return getattr(rule, "rule", None)

    return route_of


def instrument_flask_app(
    app: flask.Flask,
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
    """Wrap ``app.wsgi_app`` in WSGIMiddleware (the same options); the span is named after the
    matched route (``POST /validate/<kind>``). No ``before_request`` hook: nothing runs when unsampled.

    Returns None and instruments in place, as contrib's ``FlaskInstrumentor.instrument_app``
    does; a second call on the same app logs a warning and changes nothing.
    """
    if not callable(getattr(app, "wsgi_app", None)):
        raise InvalidArgumentError(
            f"instrument_flask_app(): app must be a Flask app, not a {type(app).__name__}", argument="app"
        )
    if getattr(app, _INSTRUMENTED, False):
        _logger.warning("k8s_otel: this Flask app is already instrumented; left as it is")
        return
    middleware = WSGIMiddleware(
        app.wsgi_app,
        tracer_provider=tracer_provider,
        trust=trust,
        webhook_type=webhook_type,
        record_user=record_user,
        max_body_bytes=max_body_bytes,
        record_exception_messages=record_exception_messages,
        paths=paths,
        fast_reader=fast_reader,
    )
    middleware.route_of = _route_matcher(app)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    setattr(app, _INSTRUMENTED, True)
