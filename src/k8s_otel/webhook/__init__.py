"""Admission webhook instrumentation: one line, and the webhook's spans sit in kube-apiserver's trace.

``WSGIMiddleware`` and ``ASGIMiddleware`` wrap any app; ``admission_handler`` decorates a plain
``handler(review) -> review``; ``k8s_otel.webhook.flask`` and ``k8s_otel.webhook.fastapi`` hold the
framework helpers. Importing this package never imports a web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ASGIMiddleware", "WSGIMiddleware", "admission_handler", "attribute_keys"]

_LAZY = {
    "ASGIMiddleware": "k8s_otel.webhook.asgi",
    "WSGIMiddleware": "k8s_otel.webhook.wsgi",
    "admission_handler": "k8s_otel.webhook.handler",
    "attribute_keys": "k8s_otel.webhook._core",
}

if TYPE_CHECKING:
    from k8s_otel.webhook._core import attribute_keys
    from k8s_otel.webhook.asgi import ASGIMiddleware
    from k8s_otel.webhook.handler import admission_handler
    from k8s_otel.webhook.wsgi import WSGIMiddleware


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'k8s_otel.webhook' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
