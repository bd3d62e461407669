"""OpenTelemetry for Python Kubernetes controllers and admission webhooks.

Spans made here sit inside kube-apiserver's traces, with the same sampling, span names and
attributes as the Kubernetes components. Heavy modules (gRPC, the exporter) load only when
``configure`` is first used, so ``import k8s_otel`` stays cheap on a webhook's start-up path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AlreadyConfiguredError",
    "EffectiveSettings",
    "ExportStatistics",
    "PerMillionSampler",
    "Setting",
    "TracingConfiguration",
    "TracingConfigurationError",
    "TracingHandle",
    "__version__",
    "configure",
    "load_tracing_configuration",
    "validate_tracing_configuration",
]

_LAZY = {
    "PerMillionSampler": "k8s_otel.sampling",
    "TracingConfiguration": "k8s_otel.config",
    "TracingConfigurationError": "k8s_otel.config",
    "load_tracing_configuration": "k8s_otel.config",
    "validate_tracing_configuration": "k8s_otel.config",
    "configure": "k8s_otel.wiring",
    "TracingHandle": "k8s_otel.wiring",
    "AlreadyConfiguredError": "k8s_otel.wiring",
    "ExportStatistics": "k8s_otel.wiring",
    "EffectiveSettings": "k8s_otel.settings",
    "Setting": "k8s_otel.settings",
}

if TYPE_CHECKING:
    from k8s_otel.config import (
        TracingConfiguration,
        TracingConfigurationError,
        load_tracing_configuration,
        validate_tracing_configuration,
    )
    from k8s_otel.sampling import PerMillionSampler
    from k8s_otel.settings import EffectiveSettings, Setting
    from k8s_otel.wiring import AlreadyConfiguredError, ExportStatistics, TracingHandle, configure


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'k8s_otel' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
