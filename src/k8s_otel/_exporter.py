"""The OTLP exporter, built from resolved settings only, created lazily and again after a fork.

gRPC channels made before ``fork()`` are unsafe in the child (gunicorn ``--preload``), so no
channel exists until the batch processor's worker first exports, and a child process builds its
own exporter the first time it exports. Every argument is passed explicitly, so the stock
exporter's own environment reading (seconds for the timeout, TLS on a bare ``host:port``, a
raise on ``compression=none``) never comes into play. The gRPC exporter is the stock one extended
to heal a silent connection and to report why an export failed (``_grpc_export``); retries and
counting are ``_export``'s.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Callable, Optional

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from k8s_otel._endpoint import GRPC
from k8s_otel._export import ExportFailure
from k8s_otel._files import read_regular_file
from k8s_otel._settings import EffectiveSettings, protocol_problem

__all__ = ["ForkSafeExporter", "build_exporter"]

_logger = logging.getLogger("k8s_otel.exporter")


class ForkSafeExporter(SpanExporter):
    """Creates the real exporter on first export, and anew in a forked child (or when it asks to be
    replaced: an SDK < 1.40 that cannot rebuild a silent channel)."""

    def __init__(self, factory: Callable[[], SpanExporter]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._exporter: Optional[SpanExporter] = None
        self._pid = 0
        self._shutdown = False
        self._interrupted = False
        self.rebuilds = 0
        self._last_failure: Optional[ExportFailure] = None

    def _current(self) -> Optional[SpanExporter]:
        pid = os.getpid()
        if self._exporter is not None and self._pid == pid:
            return self._exporter
        with self._lock:
            if self._shutdown:
                return None
            if self._exporter is None or self._pid != pid:
                # In a forked child the parent's exporter (and its channel) is abandoned, not closed:
                # closing a channel inherited across fork is itself unsafe.
                self._exporter = self._factory()
                self._pid = pid
                if self._interrupted:
                    self.interrupt_backoff()
            return self._exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        exporter = self._current()
        if exporter is None:
            return SpanExportResult.FAILURE
        self._last_failure = None
        result = exporter.export(spans)
        report = getattr(exporter, "last_failure", None)
        self._last_failure = report() if callable(report) and result is not SpanExportResult.SUCCESS else None
        if getattr(exporter, "needs_replacement", False):
            self._replace(exporter)
        return result

    def _replace(self, old: SpanExporter) -> None:
        """A new exporter (a new channel) in place of ``old``, which asked for it (older SDKs)."""
        with self._lock:
            if self._shutdown or self._exporter is not old:
                return
            self._exporter = self._factory()
            if self._interrupted:
                self.interrupt_backoff()
        self.rebuilds += 1
        old.shutdown()

    # Failure reporting, delegated to the real exporter when it has it (HealingOTLPSpanExporter).

    def last_failure(self) -> Optional[ExportFailure]:
        """Why the last attempt failed, as the exporter saw it (live, during its own retries), else
        as the last export ended (kept across an exporter replacement); None after a success."""
        report = getattr(self._exporter, "last_failure", None)
        live = report() if callable(report) else None
        return live if live is not None else self._last_failure

    def request_size(self, spans: Sequence[ReadableSpan]) -> int:
        """The encoded request size, when the real exporter can tell (gRPC); else 0 (not measured)."""
        exporter = self._current()
        measure = getattr(exporter, "request_size", None)
        return int(measure(spans)) if callable(measure) else 0

    def in_flight(self) -> bool:
        check = getattr(self._exporter, "in_flight", None)
        return bool(check()) if callable(check) else False

    def interrupt_backoff(self) -> None:
        """Shutdown drain: no backoff sleeps from now on, including in an exporter not made yet."""
        self._interrupted = True
        interrupt = getattr(self._exporter, "interrupt_backoff", None)
        if callable(interrupt):
            interrupt()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        exporter = self._exporter
        return True if exporter is None else exporter.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        with self._lock:
            self._shutdown = True
            exporter, self._exporter = self._exporter, None
        if exporter is not None and self._pid == os.getpid():
            exporter.shutdown()


def _read(path: Optional[str]) -> Optional[bytes]:
    if not path or not os.path.isfile(path) or not os.access(path, os.R_OK):
        return None  # missing, not a regular file or unreadable: settings.problems says so already
    try:  # a FIFO or a device never blocks the export thread
        return read_regular_file(path, 1 << 20)[: 1 << 20]
    except OSError as error:
        _logger.error("cannot read TLS file %s: %s", path, error.strerror or type(error).__name__)
        return None


class _GivenHeaders(tuple):  # type: ignore[type-arg]
    """Header pairs that count as given even when empty.

    The stock gRPC exporter reads ``OTEL_EXPORTER_OTLP_HEADERS`` itself when ``headers`` is falsy,
    which would send the very values settings refused (docs/configuration.md).
    """

    def __bool__(self) -> bool:
        return True


class _RedactSDKHeaderWarnings(logging.Filter):
    """``parse_env_headers`` warns with the whole header text, credentials included: keep the warning, drop the text."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.args = ("<redacted>",) if record.args else record.args
        return True


logging.getLogger("opentelemetry.util.re").addFilter(_RedactSDKHeaderWarnings())

_HTTP_DEFAULT_HEADERS = frozenset({"content-type", "user-agent", "content-encoding"})


def _drop_env_headers(exporter: SpanExporter, ours: tuple[tuple[str, str], ...]) -> None:
    """The stock OTLP/HTTP exporter merges ``OTEL_EXPORTER_OTLP_HEADERS`` into the given headers.

    Settings already parsed and checked that variable; keep only its accepted headers and the
    exporter's own defaults, so a refused value is never sent (nor logged by ``requests``).
    """
    sent = getattr(getattr(exporter, "_client", None), "_headers", None)
    if isinstance(sent, dict):
        allowed = _HTTP_DEFAULT_HEADERS | {name for name, _ in ours}
        for key in [key for key in sent if key.lower() not in allowed]:
            del sent[key]


def _grpc_exporter(settings: EffectiveSettings) -> SpanExporter:
    import grpc

    from k8s_otel._grpc_export import HealingOTLPSpanExporter

    credentials = None
    if not settings.insecure.value:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(settings.certificate.value),
            private_key=_read(settings.client_key.value),
            certificate_chain=_read(settings.client_certificate.value),
        )
    return HealingOTLPSpanExporter(
        endpoint=settings.grpc_target,
        insecure=settings.insecure.value,
        credentials=credentials,
        headers=_GivenHeaders(settings.header_pairs()),
        timeout=settings.timeout_millis.value / 1000.0,
        compression=grpc.Compression.Gzip
        if settings.compression.value == "gzip"
        else grpc.Compression.NoCompression,
    )


def _http_exporter(settings: EffectiveSettings) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(
        endpoint=settings.endpoint.value,
        certificate_file=settings.certificate.value or None,
        client_key_file=settings.client_key.value or None,
        client_certificate_file=settings.client_certificate.value or None,
        headers=dict(settings.header_pairs()) or None,
        timeout=settings.timeout_millis.value / 1000.0,
        compression=Compression.Gzip if settings.compression.value == "gzip" else Compression.NoCompression,
    )
    _drop_env_headers(exporter, settings.header_pairs())
    return exporter


def build_exporter(settings: EffectiveSettings) -> tuple[Optional[SpanExporter], Optional[str]]:
    """The exporter for ``settings``, or ``(None, reason)`` when the protocol cannot be honoured.

    ``reason`` is word for word the problem ``resolve_settings`` recorded, so whoever reports both
    (``configure()``, ``doctor``) reports it once.

    Never sends gRPC to an OTLP/HTTP endpoint: ``http/protobuf`` uses the OTLP/HTTP exporter (the
    ``k8s-otel[http]`` extra) or nothing at all.
    """
    refusal = protocol_problem(settings.protocol)  # the very text settings.problems holds
    if refusal is not None:
        return None, refusal
    if settings.protocol.value == GRPC:
        import k8s_otel._grpc_export  # noqa: F401  # fail here (no grpcio), not in the worker

        return ForkSafeExporter(lambda: _grpc_exporter(settings)), None
    return ForkSafeExporter(lambda: _http_exporter(settings)), None
