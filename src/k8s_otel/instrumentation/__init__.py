"""Instrumentors for Kubernetes controllers and webhooks, each a contrib ``BaseInstrumentor``.

``KubernetesClientInstrumentor`` covers the ``kubernetes`` and ``kubernetes_asyncio`` clients,
``KopfInstrumentor`` kopf's handlers and its own API session, ``AdmissionInstrumentor`` admission
webhooks served by any framework (the zero-code ``k8s_admission`` entry point).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from k8s_otel._lazy import lazy_exports

__all__ = ["AdmissionInstrumentor", "KopfInstrumentor", "KubernetesClientInstrumentor"]

__getattr__ = lazy_exports(
    __name__,
    {
        "AdmissionInstrumentor": ("k8s_otel.instrumentation._admission", "AdmissionInstrumentor"),
        "KopfInstrumentor": ("k8s_otel.instrumentation._kopf", "KopfInstrumentor"),
        "KubernetesClientInstrumentor": (
            "k8s_otel.instrumentation._kubernetes",
            "KubernetesClientInstrumentor",
        ),
    },
)

if TYPE_CHECKING:
    from k8s_otel.instrumentation._admission import AdmissionInstrumentor
    from k8s_otel.instrumentation._kopf import KopfInstrumentor
    from k8s_otel.instrumentation._kubernetes import KubernetesClientInstrumentor
