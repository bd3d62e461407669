"""``configure()``: one call builds the TracerProvider that component-base ``NewProvider`` builds.

PerMillionSampler, one BatchSpanProcessor (counting), one OTLP exporter (retrying, healing), a
resource with the Kubernetes attributes. It flushes on interpreter exit and on SIGTERM (``atexit``
alone does not run when a pod is sent SIGTERM), every shutdown is bounded by the shutdown budget and
ends at once when the collector cannot be reached, so a dead collector never holds up pod
termination; ``TracingHandle.statistics()`` says where every span went (docs/export.md).
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any, Callable, Optional, Union

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.environment_variables import (
    OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    OTEL_EXPERIMENTAL_RESOURCE_DETECTORS,
    OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
)
from opentelemetry.sdk.resources import Resource, get_aggregated_resources
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from k8s_otel._arguments import check_configure_arguments
from k8s_otel._attributes import SERVICE_NAME
from k8s_otel._exceptions import K8sOtelError
from k8s_otel._export import (
    CountingBatchSpanProcessor,
    ExportLedger,
    ExportStatistics,
    RetryingExporter,
    StableResource,
)
from k8s_otel._exporter import build_exporter
from k8s_otel._redact import split_userinfo
from k8s_otel._resource import DETECTOR_ENTRY_POINT, KubernetesResourceDetector
from k8s_otel._sampling import PerMillionSampler
from k8s_otel._settings import EffectiveSettings, HeadersInput, log_problems, resolve_settings

__all__ = ["AlreadyConfiguredError", "ExportStatistics", "TracingHandle", "configure", "resource_for"]

_logger = logging.getLogger("k8s_otel.wiring")

"""Seconds that exit and SIGTERM give the exporter by default: well inside the default 30 s grace period."""


class _PropagatingTracer(trace.NoOpTracer):
    """Records nothing but keeps the incoming span context current, so propagation goes on.

    Go's noop tracer does this (kube-apiserver passes a caller's traceparent through with tracing
    off); the Python API's NoOpTracer does it only from 1.45 on.
    """

    def start_span(
        self, name: str, context: Optional[Context] = None, *args: Any, **kwargs: Any
    ) -> trace.Span:
        span = trace.get_current_span(context)
        return (
            span
            if isinstance(span, trace.NonRecordingSpan)
            else trace.NonRecordingSpan(span.get_span_context())
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: Optional[Context] = None, *args: Any, **kwargs: Any
    ) -> Iterator[trace.Span]:
        with trace.use_span(self.start_span(name, context), end_on_exit=False) as span:
            yield span


class _PropagatingTracerProvider(trace.NoOpTracerProvider):
    """The provider ``OTEL_SDK_DISABLED=true`` gives: no spans, context still propagated."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _PropagatingTracer()


class AlreadyConfiguredError(K8sOtelError, RuntimeError):
    """``configure()`` was called again with different arguments."""


def _run_bounded(function: Callable[[], object], timeout: float, what: str) -> bool:
    """Run ``function`` on a daemon thread and wait at most ``timeout`` seconds for it."""
    done = threading.Event()

    def target() -> None:
        try:
            function()
        except Exception:
            _logger.exception("k8s_otel: %s failed", what)
        finally:
            done.set()

    threading.Thread(target=target, name=f"k8s-otel-{what}", daemon=True).start()
    if done.wait(max(timeout, 0.0)):
        return True
    _logger.warning(
        "k8s_otel: %s did not finish within %.1f s; giving up so the process can exit", what, timeout
    )
    return False


class _Flush:
    """One flush in progress, on its own thread; every caller that comes meanwhile waits for it."""

    def __init__(self, processor: BatchSpanProcessor) -> None:
        self.done = threading.Event()
        self.succeeded = False
        self._processor = processor
        threading.Thread(target=self._run, name="k8s-otel-flush", daemon=True).start()

    def _run(self) -> None:
        try:
            self.succeeded = bool(self._processor.force_flush())
        except Exception:
            _logger.exception("k8s_otel: flush failed")
        finally:
            self.done.set()


class TracingHandle:
    """What ``configure()`` built: the provider, the effective settings, and a bounded shutdown."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider,
        settings: EffectiveSettings,
        processor: Optional[BatchSpanProcessor],
        *,
        installed: bool,
        arguments: Mapping[str, Any],
        ledger: Optional[ExportLedger] = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.settings = settings
        self.installed = installed
        self._processor = processor
        self._ledger = ledger or ExportLedger()
        self._arguments = dict(arguments)
        self._shutdown_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._flush: Optional[_Flush] = None
        self.is_shut_down = False

    def __repr__(self) -> str:
        return (
            f"TracingHandle(endpoint={self.settings.endpoint.value!r}, protocol={self.settings.protocol.value!r}, "
            f"sampler={self.sampler_description!r}, installed={self.installed})"
        )

    @property
    def sampler_description(self) -> str:
        sampler = getattr(self.tracer_provider, "sampler", None)
        return sampler.get_description() if sampler is not None else "disabled"

    @property
    def shutdown_timeout(self) -> float:
        """Seconds that exit and SIGTERM give the exporter (``K8S_OTEL_SHUTDOWN_TIMEOUT``, ``shutdown_timeout``)."""
        return self.settings.shutdown_timeout_millis.value / 1000.0

    def statistics(self) -> ExportStatistics:
        """Where every sampled span went: ended, exported, dropped (queue full), failed, pending."""
        return self._ledger.statistics()

    def delivery_impossible(self) -> bool:
        """The last export found no collector (refused, DNS failure) and nothing is in flight."""
        processor = self._processor
        exporter = processor.span_exporter if processor is not None else None
        return isinstance(exporter, RetryingExporter) and exporter.unreachable()

    def force_flush(self, timeout: Optional[float] = None) -> bool:
        """Export what is queued; wait at most ``timeout`` seconds (default: the shutdown budget).

        At most one flush runs at a time: a call made while one runs waits for that one (so a
        flush that timed out leaves one thread behind at most, never one per call).
        """
        processor = self._processor
        if processor is None or self.is_shut_down:
            return True
        with self._flush_lock:
            flush = self._flush
            if flush is None or flush.done.is_set():
                flush = self._flush = _Flush(processor)
        wait = self.shutdown_timeout if timeout is None else timeout
        return flush.done.wait(max(wait, 0.0)) and flush.succeeded

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Deliver what is queued and close the exporter, within ``timeout`` seconds (default: the
        shutdown budget). Gives up at once when the collector cannot be reached. True when nothing
        queued was lost. Safe to call twice."""
        with self._shutdown_lock:
            if self.is_shut_down:
                return True
            self.is_shut_down = True
        processor = self._processor
        if processor is None:
            return True
        budget = self.shutdown_timeout if timeout is None else max(timeout, 0.0)
        deadline = time.monotonic() + budget
        provider = self.tracer_provider
        exporter = processor.span_exporter
        failed_before = self._ledger.statistics().failed
        if isinstance(exporter, RetryingExporter):
            exporter.begin_drain(deadline)

        def stop() -> None:
            processor.shutdown()  # type: ignore[no-untyped-call]  # drains the queue
            if isinstance(provider, TracerProvider):
                provider.shutdown()

        finished = _run_bounded(stop, deadline - time.monotonic(), "shutdown")
        if not finished:
            # Out of time (collector gone or slow): closing the exporter cancels the RPC in flight and
            # the retry backoff, so the worker thread stops instead of retrying into the pod's exit.
            exporter.shutdown()
        self._ledger.close()
        self._ledger.maybe_report(final=True)
        return finished and self._ledger.statistics().failed == failed_before


_state_lock = threading.Lock()
_installed: Optional[TracingHandle] = None


def _sdk_expands_the_wildcard() -> bool:
    """``OTEL_EXPERIMENTAL_RESOURCE_DETECTORS=*`` means every registered detector from SDK 1.40 on."""
    from opentelemetry.sdk.version import __version__

    major, minor = (int(part) for part in re.findall(r"\d+", __version__)[:2])
    return (major, minor) >= (1, 40)


def _sdk_runs_the_kubernetes_detector() -> bool:
    """Whether ``Resource.create()`` runs ``KubernetesResourceDetector`` itself: when
    ``OTEL_EXPERIMENTAL_RESOURCE_DETECTORS`` names its entry point, or ``*``, and the SDK finds
    that entry point (a source tree on ``sys.path`` has none)."""
    names = {name.strip() for name in os.environ.get(OTEL_EXPERIMENTAL_RESOURCE_DETECTORS, "").split(",")}
    if DETECTOR_ENTRY_POINT not in names and not ("*" in names and _sdk_expands_the_wildcard()):
        return False
    # The lookup the SDK makes (cached for the process), so the answer is the SDK's own.
    from opentelemetry.util._importlib_metadata import entry_points

    return any(True for _ in entry_points(group="opentelemetry_resource_detector", name=DETECTOR_ENTRY_POINT))


def resource_for(settings: EffectiveSettings, resource: Union[Resource, Mapping[str, Any], None]) -> Resource:
    """The SDK's own resource, with the Kubernetes detector in it once, and the code's attributes on top.

    ``Resource.create()`` aggregates the SDK defaults, the ``OTEL_EXPERIMENTAL_RESOURCE_DETECTORS``
    and ``OTEL_RESOURCE_ATTRIBUTES``/``OTEL_SERVICE_NAME``. When that variable names ``k8s`` (or
    ``*``) the SDK runs the Kubernetes detector itself; otherwise it is aggregated on top, by the
    SDK's ``get_aggregated_resources``. Either way the user's variables win over the detector (it
    leaves out the keys they set), the workload name beats the SDK's ``unknown_service``, and the
    ``resource``/``service_name`` arguments beat everything. The result hashes itself once
    (``StableResource``): the OTLP encoder hashes it for every span it exports.
    """
    explicit: dict[str, Any] = {}
    if isinstance(resource, Resource):
        explicit.update(resource.attributes)
    elif resource is not None:
        explicit.update(resource)
    if settings.service_name.source == "argument":
        explicit[SERVICE_NAME] = settings.service_name.value
    if _sdk_runs_the_kubernetes_detector():
        return StableResource.of(Resource.create(explicit))
    detected = get_aggregated_resources([KubernetesResourceDetector()], Resource.create())
    return StableResource.of(detected.merge(Resource(explicit)))


DEFAULT_ATTRIBUTE_VALUE_LENGTH = 16_384
"""The attribute value length limit when ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`` and
``OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`` are unset (the SDK's default is no limit): one value
taken from a request must never make a span, or its batch, too large to export."""


_SDK_COUNT_LIMIT = 128  # the SDK's default for every count limit


def _span_limits() -> SpanLimits:
    try:
        if os.environ.get(OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT) or os.environ.get(
            OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT
        ):
            return SpanLimits()  # the SDK reads the variables itself
        return SpanLimits(max_attribute_length=DEFAULT_ATTRIBUTE_VALUE_LENGTH)
    except ValueError:  # a bad OTEL_*_LIMIT variable, which settings.problems names: never raise for it
        count = _SDK_COUNT_LIMIT
        return SpanLimits(
            max_attributes=count,
            max_events=count,
            max_links=count,
            max_span_attributes=count,
            max_event_attributes=count,
            max_link_attributes=count,
            max_attribute_length=DEFAULT_ATTRIBUTE_VALUE_LENGTH,
            max_span_attribute_length=DEFAULT_ATTRIBUTE_VALUE_LENGTH,
        )


def _take_from_process_budget() -> bool:
    from k8s_otel._trust import process_budget

    return process_budget().take()


def configure(
    *,
    endpoint: Optional[str] = None,
    sampling_rate_per_million: Optional[int] = None,
    config_file: Optional[Union[str, os.PathLike[str]]] = None,
    service_name: Optional[str] = None,
    resource: Union[Resource, Mapping[str, Any], None] = None,
    headers: Optional[HeadersInput] = None,
    insecure: Optional[bool] = None,
    protocol: Optional[str] = None,
    shutdown_timeout: Optional[float] = None,
    install: bool = True,
    log_correlation: Optional[bool] = None,
    sample_linked: Optional[bool] = None,
) -> TracingHandle:
    """Build, and by default install globally, the TracerProvider kube-apiserver would build.

    ``endpoint`` takes the TracingConfiguration forms (``host:port``, ``dns://``, ``unix://``) and
    ``http(s)://`` URLs. Arguments beat the TracingConfiguration file (``config_file`` or
    ``K8S_OTEL_TRACING_CONFIG``), which beats the ``OTEL_*`` variables, which beat the defaults.
    ``shutdown_timeout`` (seconds; ``K8S_OTEL_SHUTDOWN_TIMEOUT`` in milliseconds; 5 s) bounds what
    exit and SIGTERM spend delivering queued spans.
    A bad argument raises ``InvalidArgumentError`` (a ``K8sOtelError``); bad files and variables
    never raise: they are listed in ``handle.settings.problems``, logged once each, and replaced by
    the default (docs/configuration.md, "Errors"). A second call with the same arguments returns
    the same handle; with different ones it raises AlreadyConfiguredError.
    ``log_correlation`` puts trace ids in every log record (None: ``OTEL_PYTHON_LOG_CORRELATION``).
    ``sample_linked`` (default: ``K8S_OTEL_SAMPLE_LINKED``, off): also sample a root whose link is
    sampled (``PerMillionSampler(..., sample_linked=True)``; docs/objects.md says what it costs).
    """
    check_configure_arguments(
        endpoint=endpoint,
        sampling_rate_per_million=sampling_rate_per_million,
        config_file=config_file,
        service_name=service_name,
        resource=resource,
        headers=headers,
        insecure=insecure,
        protocol=protocol,
        shutdown_timeout=shutdown_timeout,
        install=install,
        log_correlation=log_correlation,
        sample_linked=sample_linked,
    )
    arguments = {
        "endpoint": endpoint,
        "sampling_rate_per_million": sampling_rate_per_million,
        "config_file": os.fspath(config_file) if config_file is not None else None,
        "service_name": service_name,
        "resource": resource,
        "headers": headers,
        "insecure": insecure,
        "protocol": protocol,
        "sample_linked": sample_linked,
        "shutdown_timeout": shutdown_timeout,
    }
    global _installed
    with _state_lock:
        if install and _installed is not None:
            return _same_or_raise(_installed, arguments)
        settings = resolve_settings(
            endpoint=endpoint,
            sampling_rate_per_million=sampling_rate_per_million,
            config_file=config_file,
            service_name=service_name,
            headers=headers,
            insecure=insecure,
            protocol=protocol,
            shutdown_timeout=shutdown_timeout,
            sample_linked=sample_linked,
        )
        handle = _build(settings, resource, arguments, install)
        if install:
            _installed = handle
    if handle.installed:
        atexit.register(handle.shutdown)
        _chain_sigterm(handle)
    from k8s_otel._logs import apply_log_correlation

    apply_log_correlation(log_correlation)
    return handle


def _same_or_raise(handle: TracingHandle, arguments: Mapping[str, Any]) -> TracingHandle:
    if handle.is_shut_down:
        raise AlreadyConfiguredError(
            "k8s_otel.configure(): tracing was configured and then shut down in this process; "
            "OpenTelemetry allows one global TracerProvider per process"
        )
    changed = [name for name, value in arguments.items() if handle._arguments.get(name) != value]
    if changed:
        shown = ", ".join(
            f"{name}: <redacted>"
            if name == "headers"
            else f"{name}: {_shown_argument(handle._arguments.get(name))} -> {_shown_argument(arguments[name])}"
            for name in changed
        )
        raise AlreadyConfiguredError(
            f"k8s_otel.configure() was already called with different arguments ({shown}); "
            "a process has one global TracerProvider. Pass install=False for a separate one"
        )
    return handle


def _shown_argument(value: object) -> str:
    """An argument as an error shows it: an endpoint's userinfo (a credential) is never shown."""
    if isinstance(value, str):
        return repr(split_userinfo(value)[0])
    return repr(value)


def _build(
    settings: EffectiveSettings,
    resource: Union[Resource, Mapping[str, Any], None],
    arguments: Mapping[str, Any],
    install: bool,
) -> TracingHandle:
    if settings.sdk_disabled.value:
        log_problems(settings.problems)
        provider: trace.TracerProvider = _PropagatingTracerProvider()
        installed = install and _install(provider)
        return TracingHandle(provider, settings, None, installed=installed, arguments=arguments)

    sdk_provider = TracerProvider(
        sampler=PerMillionSampler(
            settings.sampling_rate_per_million.value,
            sample_linked=settings.sample_linked.value,
            # A sampled link is as forceable as a sampled parent: both spend the process's budget.
            link_budget=_take_from_process_budget if settings.sample_linked.value else None,
        ),
        resource=resource_for(settings, resource),
        shutdown_on_exit=False,
        span_limits=_span_limits(),
    )
    exporter, refusal = build_exporter(settings)
    if refusal is not None and refusal not in settings.problems:
        settings = dataclasses.replace(settings, problems=(*settings.problems, refusal))
    log_problems(settings.problems)  # the one place: each problem once, one line each
    processor = None
    ledger = ExportLedger()
    if exporter is not None:
        # A failed batch is retried for OTEL_BSP_EXPORT_TIMEOUT ("the maximum allowed time to export
        # data"), which the SDK reads but does not use.
        retrying = RetryingExporter(
            exporter, ledger, retry_window=settings.export_timeout_millis.value / 1000.0
        )
        processor = CountingBatchSpanProcessor(
            retrying,
            ledger,
            max_queue_size=settings.max_queue_size.value,
            schedule_delay_millis=settings.schedule_delay_millis.value,
            max_export_batch_size=settings.max_export_batch_size.value,
            export_timeout_millis=settings.export_timeout_millis.value,
        )
        sdk_provider.add_span_processor(processor)
    installed = install and _install(sdk_provider)
    return TracingHandle(
        sdk_provider, settings, processor, installed=installed, arguments=arguments, ledger=ledger
    )


def _install(provider: trace.TracerProvider) -> bool:
    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        _logger.warning(
            "k8s_otel.configure(): a global TracerProvider (%s) is already installed, for example by "
            "opentelemetry-instrument; the new provider was built but not installed. Use the handle's "
            "tracer_provider explicitly, or drop one of the two set-ups",
            type(current).__name__,
        )
        return False
    trace.set_tracer_provider(provider)
    return True


def _chain_sigterm(handle: TracingHandle) -> None:
    """Flush on SIGTERM, then do what the process would have done without us."""
    if threading.current_thread() is not threading.main_thread():
        _logger.debug(
            "k8s_otel: not on the main thread; SIGTERM flushing relies on the application's handler"
        )
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):
        return

    def on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
        if callable(previous):
            # The application handles SIGTERM (uvicorn, gunicorn, kopf): it will drain and exit
            # normally, and atexit shuts down. Export what is queued now, in case it does not,
            # unless the collector cannot be reached at all.
            if not handle.delivery_impossible():
                handle.force_flush(handle.shutdown_timeout)
            previous(signum, frame)
            return
        if previous == signal.SIG_IGN:
            return
        handle.shutdown()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError):
        _logger.debug("k8s_otel: cannot install a SIGTERM handler here", exc_info=True)
