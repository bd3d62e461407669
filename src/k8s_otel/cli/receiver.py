"""A small in-process OTLP/gRPC trace receiver, for tests, ``k8s-otel demo`` and ``k8s-otel receive``.

It is a development tool, not a collector: it keeps every request in memory. It can answer with a
chosen gRPC status code or after a delay, so that exporter retry and shutdown paths can be tested
against real gRPC.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["OTLPReceiver", "ReceivedRequest", "ReceivedSpan", "any_value"]

_SPAN_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUS_CODES = {0: "UNSET", 1: "OK", 2: "ERROR"}


def any_value(value: AnyValue) -> Any:
    """Turn an OTLP ``AnyValue`` into the plain Python value it carries."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(any_value(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _attributes(pairs: Sequence[KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived, with ids as lower-case hex (empty string when absent)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    status_code: str
    status_message: str
    links: tuple[tuple[str, str, dict[str, Any]], ...]
    events: tuple[tuple[str, dict[str, Any]], ...]
    flags: int
    trace_state: str


@dataclass(frozen=True)
class ReceivedRequest:
    """One Export call: the decoded request and its gRPC metadata (lower-case keys)."""

    request: trace_service_pb2.ExportTraceServiceRequest
    metadata: Mapping[str, str]
    received_at: float = field(default_factory=time.monotonic)

    def spans(self) -> Iterator[ReceivedSpan]:
        for resource_spans in self.request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    yield ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=_SPAN_KINDS.get(span.kind, str(span.kind)),
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        resource=resource,
                        scope=scope_spans.scope.name,
                        status_code=_STATUS_CODES.get(span.status.code, str(span.status.code)),
                        status_message=span.status.message,
                        links=tuple(
                            (link.trace_id.hex(), link.span_id.hex(), _attributes(link.attributes))
                            for link in span.links
                        ),
                        events=tuple((event.name, _attributes(event.attributes)) for event in span.events),
                        flags=span.flags,
                        trace_state=span.trace_state,
                    )


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        return self._receiver._handle(request, context)


class OTLPReceiver:
    """A real OTLP/gRPC trace receiver on a loopback port (0 picks a free one).

    ``status_code`` makes every Export fail with that gRPC code; ``delay`` holds each answer back
    that many seconds. Both may be changed while the receiver runs.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        status_code: Optional[grpc.StatusCode] = None,
        delay: float = 0.0,
        on_request: Optional[Callable[[ReceivedRequest], None]] = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.status_code = status_code
        self.delay = delay
        self._on_request = on_request
        self._requests: list[ReceivedRequest] = []
        self._changed = threading.Condition()
        self._server: Optional[grpc.Server] = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        """The ``host:port`` form, as a TracingConfiguration writes it."""
        return f"{self.host}:{self.port}"

    def start(self) -> OTLPReceiver:
        if self.requested_port:
            # A plain bind first: a taken port gives one clear OSError instead of gRPC's C-core log.
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((self.host, self.requested_port))
        # No SO_REUSEPORT: a second receiver on a taken port must fail, not silently share it.
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), server)  # type: ignore[no-untyped-call]
        self.port = server.add_insecure_port(f"{self.host}:{self.requested_port}")
        if self.port == 0:
            raise OSError(f"cannot listen on {self.host}:{self.requested_port}")
        server.start()
        self._server = server
        return self

    def stop(self, grace: Optional[float] = None) -> None:
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _handle(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        if self.delay:
            time.sleep(self.delay)
        metadata = {key.lower(): value for key, value in context.invocation_metadata()}
        received = ReceivedRequest(request=request, metadata=metadata)
        with self._changed:
            self._requests.append(received)
            self._changed.notify_all()
        if self._on_request is not None:
            self._on_request(received)
        if self.status_code is not None:
            context.abort(self.status_code, f"receiver configured to answer {self.status_code.name}")
        return trace_service_pb2.ExportTraceServiceResponse()

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._changed:
            return list(self._requests)

    def spans(self) -> list[ReceivedSpan]:
        return [span for request in self.requests for span in request.spans()]

    def clear(self) -> None:
        with self._changed:
            self._requests.clear()

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        """Wait until at least ``count`` spans have arrived; return them all (may be fewer on timeout)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                spans = [span for request in self._requests for span in request.spans()]
                remaining = deadline - time.monotonic()
                if len(spans) >= count or remaining <= 0:
                    return spans
                self._changed.wait(remaining)
