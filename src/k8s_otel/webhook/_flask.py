"""Flask: ``instrument_flask_app(app)`` (the ``k8s-otel[flask]`` extra)."""

from __future__ import annotations

from typing import Any, Callable, Optional

from k8s_otel._extras import missing_extra

try:
    import flask
except ImportError as error:
    raise missing_extra("flask", error) from None


from k8s_otel.webhook._wsgi import WSGIMiddleware

__all__ = ["instrument_flask_app"]


def _route_matcher(app: flask.Flask) -> Callable[[dict[str, Any]], Optional[str]]:
    def route_of(environ: dict[str, Any]) -> Optional[str]:
        """The rule Flask matches for this request (asked of its url_map, sampled requests only)."""
        try:
            rule, _ = app.url_map.bind_to_environ(environ).match(return_rule=True)
        except Exception:  # no route (404/405) or a redirect: the path name stays
            return None
        return getattr(rule, "rule", None)

    return route_of


def instrument_flask_app(app: flask.Flask, **options: Any) -> WSGIMiddleware:
    """Wrap ``app.wsgi_app`` in WSGIMiddleware (same options); the span is named after the matched
    route (``POST /validate/<kind>``). No ``before_request`` hook: nothing runs when unsampled."""
    middleware = WSGIMiddleware(app.wsgi_app, **options)
    middleware.route_of = _route_matcher(app)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    return middleware
