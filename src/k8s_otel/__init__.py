"""OpenTelemetry for Python Kubernetes controllers and admission webhooks.

Spans made here sit inside kube-apiserver's traces, with the same sampling, span names and
attributes as the Kubernetes components. Everything a user imports is named here (and in the
``webhook``, ``instrumentation`` and ``objects`` packages); modules starting with ``_`` are private.
Heavy modules (gRPC, the exporter) load only when first used, so ``import k8s_otel`` stays cheap on
a webhook's start-up path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from k8s_otel._lazy import lazy_exports
from k8s_otel._sdk_import import import_sdk_despite_a_bad_limit

__version__ = "0.1.0"

import_sdk_despite_a_bad_limit()  # a bad OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT is a settings problem, not a crash

__all__ = [
    "AlreadyConfiguredError",
    "Caller",
    "EffectiveSettings",
    "ExportStatistics",
    "InvalidArgumentError",
    "JSONFormatter",
    "K8sOtelError",
    "KubernetesPropagator",
    "KubernetesResourceDetector",
    "PerMillionSampler",
    "SampledParentBudget",
    "Setting",
    "TracingConfiguration",
    "TracingConfigurationError",
    "TracingHandle",
    "TrustPolicy",
    "__version__",
    "configure",
    "disable_log_correlation",
    "enable_log_correlation",
    "extract",
    "inject",
    "kube_apiserver_rule",
    "load_tracing_configuration",
    "process_budget",
    "validate_tracing_configuration",
]

_EXPORTS = {
    "AlreadyConfiguredError": "k8s_otel._wiring",
    "Caller": "k8s_otel._trust",
    "EffectiveSettings": "k8s_otel._settings",
    "ExportStatistics": "k8s_otel._wiring",
    "InvalidArgumentError": "k8s_otel._exceptions",
    "JSONFormatter": "k8s_otel._logs",
    "K8sOtelError": "k8s_otel._exceptions",
    "KubernetesPropagator": "k8s_otel._propagation",
    "KubernetesResourceDetector": "k8s_otel._resource",
    "PerMillionSampler": "k8s_otel._sampling",
    "SampledParentBudget": "k8s_otel._trust",
    "Setting": "k8s_otel._settings",
    "TracingConfiguration": "k8s_otel._config",
    "TracingConfigurationError": "k8s_otel._config",
    "TracingHandle": "k8s_otel._wiring",
    "TrustPolicy": "k8s_otel._trust",
    "configure": "k8s_otel._wiring",
    "disable_log_correlation": "k8s_otel._logs",
    "enable_log_correlation": "k8s_otel._logs",
    "extract": "k8s_otel._propagation",
    "inject": "k8s_otel._propagation",
    "kube_apiserver_rule": "k8s_otel._trust",
    "load_tracing_configuration": "k8s_otel._config",
    "process_budget": "k8s_otel._trust",
    "validate_tracing_configuration": "k8s_otel._config",
}

__getattr__ = lazy_exports(__name__, {name: (module, name) for name, module in _EXPORTS.items()})

if TYPE_CHECKING:
    from k8s_otel._config import (
        TracingConfiguration,
        TracingConfigurationError,
        load_tracing_configuration,
        validate_tracing_configuration,
    )
    from k8s_otel._exceptions import InvalidArgumentError, K8sOtelError
    from k8s_otel._logs import JSONFormatter, disable_log_correlation, enable_log_correlation
    from k8s_otel._propagation import KubernetesPropagator, extract, inject
    from k8s_otel._resource import KubernetesResourceDetector
    from k8s_otel._sampling import PerMillionSampler
    from k8s_otel._settings import EffectiveSettings, Setting
    from k8s_otel._trust import Caller, SampledParentBudget, TrustPolicy, kube_apiserver_rule, process_budget
    from k8s_otel._wiring import AlreadyConfiguredError, ExportStatistics, TracingHandle, configure
