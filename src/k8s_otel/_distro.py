"""``opentelemetry-instrument`` with k8s-otel's set-up: the ``k8s`` distro and configurator.

``OTEL_PYTHON_DISTRO=k8s OTEL_PYTHON_CONFIGURATOR=k8s opentelemetry-instrument python app.py`` (or
the OpenTelemetry Operator's injection, which runs the same ``sitecustomize``) builds the tracing
that ``k8s_otel.configure()`` builds from the environment, by calling it: the per-million sampler,
the Kubernetes resource, the exporter with its quirks hidden, fork safety, the SIGTERM flush, the
bounded shutdown and the settings report. The stock configurator would build a plain SDK provider
instead, which loses the last four.

What the stock configurator does besides traces keeps its meaning: ``OTEL_METRICS_EXPORTER`` and
``OTEL_LOGS_EXPORTER`` set up the SDK's meter and logger providers, ``OTEL_PROPAGATORS`` chooses the
propagators (unset: ``KubernetesPropagator``), and with ``OTEL_CONFIG_FILE`` set the SDK's file
configuration runs instead of all of this (``k8s_otel._file_config``).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

from opentelemetry.environment_variables import OTEL_PROPAGATORS
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]  # untyped module
from opentelemetry.instrumentation.environment_variables import OTEL_PYTHON_CONFIGURATOR
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.environment_variables import (
    _OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED as _LOGGING_AUTO_INSTRUMENTATION_ENV,
)

from k8s_otel._attributes import TELEMETRY_AUTO_VERSION
from k8s_otel._env import env_flag
from k8s_otel._file_config import CONFIG_FILE_ENV

__all__ = ["CONFIGURATOR_NAME", "DISTRO_NAME", "KubernetesConfigurator", "KubernetesDistro"]

_logger = logging.getLogger("k8s_otel.distro")

DISTRO_NAME = "k8s"
CONFIGURATOR_NAME = "k8s"


class KubernetesDistro(BaseDistro):  # type: ignore[misc]  # the contrib package ships no type hints
    """Selects the ``k8s`` configurator unless one was chosen, so ``OTEL_PYTHON_DISTRO=k8s`` is enough.

    ``opentelemetry-instrument`` reads ``OTEL_PYTHON_CONFIGURATOR`` after the distro has run, and
    with it unset it would run whichever configurator the metadata scan finds first.
    """

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault(OTEL_PYTHON_CONFIGURATOR, CONFIGURATOR_NAME)

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        """The contrib logging instrumentation keeps its log handler but leaves the fields to us.

        Its record factory would wrap ours and write ``"0"`` over the empty ids outside a span; the
        values inside a span are the same, and ours adds ``trace_id``/``span_id``.
        """
        if entry_point.name == "logging" and _log_correlation_enabled():
            kwargs.setdefault("set_logging_format", False)
        super().load_instrumentor(entry_point, **kwargs)


def _log_correlation_enabled() -> bool:
    import logging as stdlib_logging

    return bool(getattr(stdlib_logging.getLogRecordFactory(), "k8s_otel_log_correlation", False))


class KubernetesConfigurator(_OTelSDKConfigurator):
    """Runs ``k8s_otel.configure()`` from the environment; the SDK's file configuration if asked for."""

    def _configure(self, **kwargs: Any) -> None:
        if os.environ.get(CONFIG_FILE_ENV):
            # The declarative file replaces every variable, ours included: the SDK reads it, and
            # k8s-otel takes part through its entry points (sampler, detector, propagator).
            super()._configure(**kwargs)  # type: ignore[no-untyped-call]
            from k8s_otel._logs import apply_log_correlation

            apply_log_correlation(None)  # the contrib variable, not the SDK's: the file does not cover it
            return
        configure_from_environment(kwargs.get("auto_instrumentation_version"))


def configure_from_environment(auto_instrumentation_version: Optional[str] = None) -> Any:
    """What the ``k8s`` configurator runs; returns the TracingHandle. Never raises."""
    try:
        return _configure_from_environment(auto_instrumentation_version)
    except Exception:  # the application must start even if telemetry cannot
        _logger.exception("k8s_otel: the k8s configurator failed; the application runs without tracing")
        return None


def _configure_from_environment(auto_instrumentation_version: Optional[str]) -> Any:
    import k8s_otel

    # A bad or unused OTEL_TRACES_EXPORTER is one of configure()'s settings problems, logged there.
    resource = (
        {TELEMETRY_AUTO_VERSION: auto_instrumentation_version} if auto_instrumentation_version else None
    )
    handle = k8s_otel.configure(resource=resource)
    _install_propagator()
    _init_metrics_and_logs(getattr(handle.tracer_provider, "resource", None))
    return handle  # configure() also applied OTEL_PYTHON_LOG_CORRELATION


def _install_propagator() -> None:
    """``OTEL_PROPAGATORS`` keeps its meaning; unset, the Kubernetes components' propagation."""
    if os.environ.get(OTEL_PROPAGATORS, "").strip():
        return  # opentelemetry.propagate built it from the variable at import
    from opentelemetry.propagate import set_global_textmap

    from k8s_otel._propagation import KubernetesPropagator

    set_global_textmap(KubernetesPropagator())


def _init_metrics_and_logs(resource: Any) -> None:
    """``OTEL_METRICS_EXPORTER``/``OTEL_LOGS_EXPORTER``: the SDK's own set-up, on our resource.

    These are the SDK configurator's helpers (private, stable in shape since 1.2x): k8s-otel does
    not wrap metrics or logs, so the stock meaning of the variables is the right one.
    """
    from opentelemetry.sdk import _configuration as sdk_configuration

    metric_names = sdk_configuration._get_exporter_names("metrics")
    log_names = sdk_configuration._get_exporter_names("logs")
    handler = env_flag(_LOGGING_AUTO_INSTRUMENTATION_ENV, "the SDK's log handler is not installed")
    if not metric_names and not log_names and not handler:
        return
    try:
        _, metric_exporters, log_exporters = sdk_configuration._import_exporters([], metric_names, log_names)
        if metric_exporters:
            sdk_configuration._init_metrics(metric_exporters, resource)
        if log_exporters or handler:
            sdk_configuration._init_logging(log_exporters, resource, handler)
    except Exception:
        _logger.exception(
            "k8s_otel: metrics or logs could not be set up from OTEL_METRICS_EXPORTER/OTEL_LOGS_EXPORTER; "
            "tracing is unaffected"
        )
