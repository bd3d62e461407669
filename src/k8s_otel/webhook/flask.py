"""Flask: ``instrument_flask_app(app)`` (the ``k8s-otel[flask]`` extra)."""

from __future__ import annotations

from typing import Any

from k8s_otel._extras import missing_extra

try:
    import flask
except ImportError as error:
    raise missing_extra("flask", error) from None

from opentelemetry import trace

from k8s_otel.webhook.wsgi import WSGIMiddleware

__all__ = ["instrument_flask_app"]


def _name_span_after_route() -> None:
    """Once Flask has matched the route, name the span after it (``POST /validate/<kind>``)."""
    rule = flask.request.url_rule
    span = trace.get_current_span()
    if rule is not None and span.is_recording():
        span.update_name(f"{flask.request.method} {rule.rule}")
        span.set_attribute("http.route", rule.rule)


def instrument_flask_app(app: flask.Flask, **options: Any) -> WSGIMiddleware:
    """Wrap ``app.wsgi_app`` in WSGIMiddleware (same options) and record the matched route."""
    middleware = WSGIMiddleware(app.wsgi_app, **options)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    app.before_request(_name_span_after_route)
    return middleware
