"""The SDK's OTLP/gRPC span exporter, taught to notice a silent connection and to say why it failed.

A TCP connection can go silent without a FIN or an RST (a node lost, a NAT entry dropped, a proxy
wedged). gRPC then still thinks the channel is READY, every RPC runs into its deadline, and the
stock exporter only rebuilds its channel on ``UNAVAILABLE``: export stops for good. Here,
``REBUILD_AFTER_DEADLINES`` deadline errors in a row close the channel and open a new one (a new
connection, a new name resolution). That is safe against any server, unlike client keepalive
pings: a Go gRPC server (the OpenTelemetry Collector) answers pings sent more often than every
5 minutes with ``GOAWAY too_many_pings``, and a keepalive that slow could not meet a one-minute
recovery target anyway. So no keepalive is configured (gRPC's default: none).

The stub is wrapped to observe each RPC's outcome: the status code and, for ``UNAVAILABLE``,
whether the channel was in transient failure (the collector cannot be reached: refused, DNS
failure), which lets shutdown give up at once instead of waiting out its budget.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Optional

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan

from k8s_otel._export import ExportFailure

__all__ = ["REBUILD_AFTER_DEADLINES", "HealingOTLPSpanExporter"]

_logger = logging.getLogger("k8s_otel.export")

REBUILD_AFTER_DEADLINES = 2
"""Deadline errors in a row (no answer at all) after which the channel is rebuilt."""

# The stock exporter's retryable codes (its ``_RETRYABLE_ERROR_CODES``), for SDKs that do not keep
# them on the instance (``_retryable_error_codes``, 1.42+).
_RETRYABLE = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_TRANSIENT_FAILURE = grpc.ChannelConnectivity.TRANSIENT_FAILURE.value[0]
_UNREACHABLE_STATES = frozenset({_TRANSIENT_FAILURE})


def _says_too_large(error: grpc.RpcError) -> bool:
    """gRPC's own words for a message over the size limit, on either side ("... larger than max")."""
    details = error.details() if callable(getattr(error, "details", None)) else None
    return isinstance(details, str) and "larger than max" in details


def _connectivity(channel: Any) -> Optional[int]:
    """The channel's state without starting a polling thread (``subscribe`` would start one)."""
    check = getattr(getattr(channel, "_channel", None), "check_connectivity_state", None)
    if not callable(check):
        return None
    try:
        return int(check(False))
    except Exception:  # a closed channel, another grpcio: not knowing is fine
        return None


class _ObservedStub:
    """Forwards ``Export`` to the real stub and tells the exporter how each call ended."""

    def __init__(self, stub: Any, channel: Any, exporter: HealingOTLPSpanExporter) -> None:
        self._stub = stub
        self._channel = channel
        self._exporter = exporter

    def Export(self, *args: Any, **kwargs: Any) -> Any:
        exporter = self._exporter
        exporter._rpc_in_flight = True
        try:
            response = self._stub.Export(*args, **kwargs)
        except grpc.RpcError as error:
            exporter._rpc_in_flight = False
            try:
                exporter._observe_failure(self._channel, error)
            except Exception:  # observing must never change what the stock exporter sees
                _logger.debug("k8s_otel: observing an export failure failed", exc_info=True)
            raise
        finally:
            exporter._rpc_in_flight = False
        exporter._observe_success()
        return response


class HealingOTLPSpanExporter(OTLPSpanExporter):
    """``OTLPSpanExporter`` that rebuilds a silent channel and reports why its last export failed."""

    def __init__(
        self, *args: Any, rebuild_after_deadlines: int = REBUILD_AFTER_DEADLINES, **kwargs: Any
    ) -> None:
        self._rebuild_after = max(1, rebuild_after_deadlines)
        self._deadlines_in_a_row = 0
        self._last_failure: Optional[ExportFailure] = None
        self._rpc_in_flight = False
        self.rebuilds = 0
        self.needs_replacement = False
        self._encoded: Optional[tuple[Sequence[ReadableSpan], Any]] = None
        super().__init__(*args, **kwargs)
        if not isinstance(getattr(self, "_client", None), _ObservedStub):  # an SDK that builds it inline
            self._client = _ObservedStub(self._client, self._channel, self)  # type: ignore[assignment]

    def _initialize_channel_and_stub(self) -> None:
        super()._initialize_channel_and_stub()  # type: ignore[no-untyped-call]
        self._client = _ObservedStub(self._client, self._channel, self)  # type: ignore[assignment]

    def _translate_data(self, data: Sequence[ReadableSpan]) -> Any:
        # The stock retry loop encodes the batch again for every attempt, and our retries resend the
        # same batch: encode it once. Only the latest batch is kept (memory stays one request).
        encoded = self._encoded
        if encoded is not None and encoded[0] is data:
            return encoded[1]
        request = super()._translate_data(data)
        self._encoded = (data, request)
        return request

    def request_size(self, data: Sequence[ReadableSpan]) -> int:
        """The encoded size of the export request for ``data`` (encoded once, then reused to send)."""
        return int(self._translate_data(data).ByteSize())

    def _observe_success(self) -> None:
        self._deadlines_in_a_row = 0
        self._last_failure = None
        self._encoded = None

    def _observe_failure(self, channel: Any, error: grpc.RpcError) -> None:
        code = error.code() if callable(getattr(error, "code", None)) else None
        name = code.name if isinstance(code, grpc.StatusCode) else type(error).__name__
        unreachable = code is grpc.StatusCode.UNAVAILABLE and _connectivity(channel) in _UNREACHABLE_STATES
        codes = getattr(self, "_retryable_error_codes", None)
        retryable = code in (codes if isinstance(codes, frozenset) else _RETRYABLE)
        too_large = code is grpc.StatusCode.RESOURCE_EXHAUSTED and _says_too_large(error)
        self._last_failure = ExportFailure(
            name, retryable=retryable and not too_large, unreachable=unreachable, too_large=too_large
        )
        if code is not grpc.StatusCode.DEADLINE_EXCEEDED:
            self._deadlines_in_a_row = 0
            return
        self._deadlines_in_a_row += 1
        if self._deadlines_in_a_row >= self._rebuild_after and not self._shutdown:
            self._deadlines_in_a_row = 0
            self._rebuild(channel)

    def _rebuild(self, channel: Any) -> None:
        """A new channel (new connection); the old one is closed, which cancels nothing of ours."""
        current: Any = self._channel
        if channel is not current:
            return  # already replaced
        _logger.info(
            "k8s_otel: no answer from %s for %d exports in a row; opening a new connection",
            self._endpoint,
            self._rebuild_after,
        )
        self.rebuilds += 1
        if not hasattr(OTLPSpanExporter, "_initialize_channel_and_stub"):
            # An SDK (< 1.40) that builds its channel inline: ForkSafeExporter replaces this whole
            # exporter with a new one (made by the same factory) after the export in progress.
            self.needs_replacement = True
            return
        try:
            channel.close()
        except Exception:
            _logger.debug("k8s_otel: closing the silent channel failed", exc_info=True)
        self._initialize_channel_and_stub()

    # What RetryingExporter asks -----------------------------------------------------------------

    def last_failure(self) -> Optional[ExportFailure]:
        return self._last_failure

    def in_flight(self) -> bool:
        return self._rpc_in_flight

    def interrupt_backoff(self) -> None:
        """Cut the stock retry loop's backoff sleep short (shutdown drain), as its shutdown does."""
        event = getattr(self, "_shutdown_in_progress", None)
        if event is not None:
            event.set()
