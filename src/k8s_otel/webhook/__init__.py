"""Admission webhook instrumentation: one line, and the webhook's spans sit in kube-apiserver's trace.

``WSGIMiddleware`` and ``ASGIMiddleware`` wrap any app; ``admission_handler`` decorates a plain
``handler(review) -> review``; ``instrument_flask_app`` and ``instrument_fastapi_app`` wrap a
framework's app. The ``stamp_*`` names are the mutating webhook that writes trace context onto
objects (KEP-5915). Importing this package never imports a web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from k8s_otel._lazy import lazy_exports

__all__ = [
    "ASGIMiddleware",
    "WSGIMiddleware",
    "admission_handler",
    "instrument_fastapi_app",
    "instrument_flask_app",
    "stamp_asgi_app",
    "stamp_review",
    "stamp_wsgi_app",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "ASGIMiddleware": ("k8s_otel.webhook._asgi", "ASGIMiddleware"),
        "WSGIMiddleware": ("k8s_otel.webhook._wsgi", "WSGIMiddleware"),
        "admission_handler": ("k8s_otel.webhook._handler", "admission_handler"),
        "instrument_fastapi_app": ("k8s_otel.webhook._fastapi", "instrument_fastapi_app"),
        "instrument_flask_app": ("k8s_otel.webhook._flask", "instrument_flask_app"),
        "stamp_asgi_app": ("k8s_otel.webhook._stamp", "asgi_app"),
        "stamp_review": ("k8s_otel.webhook._stamp", "stamp_review"),
        "stamp_wsgi_app": ("k8s_otel.webhook._stamp", "wsgi_app"),
    },
)

if TYPE_CHECKING:
    from k8s_otel.webhook._asgi import ASGIMiddleware
    from k8s_otel.webhook._fastapi import instrument_fastapi_app
    from k8s_otel.webhook._flask import instrument_flask_app
    from k8s_otel.webhook._handler import admission_handler
    from k8s_otel.webhook._stamp import asgi_app as stamp_asgi_app
    from k8s_otel.webhook._stamp import stamp_review
    from k8s_otel.webhook._stamp import wsgi_app as stamp_wsgi_app
    from k8s_otel.webhook._wsgi import WSGIMiddleware
