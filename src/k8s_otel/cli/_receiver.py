"""A small in-process OTLP trace receiver (gRPC, and OTLP/HTTP on request), for tests and the CLI.

It is a development tool, not a collector. It keeps at most ``keep`` requests (the newest), so a
long-running ``k8s-otel receive`` (which keeps none) stays at a steady size. It can answer with a
chosen gRPC status code or after a delay, so that exporter retry and shutdown paths can be tested
against real gRPC. It binds its ports the way gRPC servers do (``SO_REUSEADDR``), so that it can
restart on its port at once after a crash, while connections of the old process linger in
``TIME_WAIT``.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = [
    "DEFAULT_KEEP",
    "MAX_HTTP_BODY",
    "OTLPReceiver",
    "ReceivedRequest",
    "ReceivedSpan",
    "any_value",
    "parse_otlp_json",
]

_logger = logging.getLogger("k8s_otel.cli.receiver")

_SPAN_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUS_CODES = {0: "UNSET", 1: "OK", 2: "ERROR"}

#: Requests kept by default: plenty for a test, bounded for a process that runs for days.
DEFAULT_KEEP = 10_000
#: The largest OTLP/HTTP body accepted, before and after decompression (gRPC's default is 4 MiB).
MAX_HTTP_BODY = 16 * 1024 * 1024
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


def any_value(value: AnyValue) -> Any:
    """Turn an OTLP ``AnyValue`` into the plain Python value it carries.

    Recursion is safe here: protobuf refuses messages nested more than 100 deep.
    """
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
    #: Event times (ns since the epoch), in the order of ``events``.
    event_times_unix_nano: tuple[int, ...] = ()


@dataclass(frozen=True)
class ReceivedRequest:
    """One Export call: the decoded request, its gRPC metadata or HTTP headers (lower-case keys)."""

    request: trace_service_pb2.ExportTraceServiceRequest
    metadata: Mapping[str, str]
    received_at: float = field(default_factory=time.monotonic)
    transport: str = "grpc"

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
                        event_times_unix_nano=tuple(event.time_unix_nano for event in span.events),
                    )


def parse_otlp_json(body: bytes) -> trace_service_pb2.ExportTraceServiceRequest:
    """Decode an OTLP/JSON export request, whose ids are hex (not proto3-JSON's base64).

    Raises ``ValueError`` for anything that is not such a request.
    """
    try:
        document = json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    # Iteratively, so that no nesting depth can exhaust the stack before ParseDict's own limit.
    pending: list[Any] = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in _ID_KEYS and isinstance(value, str):
                    try:
                        item[key] = base64.b64encode(bytes.fromhex(value)).decode()
                    except ValueError:
                        raise ValueError(f"{key} is not hex") from None
                else:
                    pending.append(value)
        elif isinstance(item, list):
            pending.extend(item)
    message = trace_service_pb2.ExportTraceServiceRequest()
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, AttributeError) as error:
        raise ValueError(f"not an OTLP/JSON export request: {type(error).__name__}") from None
    return message


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        return self._receiver._handle(request, context)


# gRPC codes the OTLP/HTTP specification maps to retryable HTTP statuses; others become 400.
_HTTP_STATUS = {
    "UNAVAILABLE": 503,
    "RESOURCE_EXHAUSTED": 429,
    "DEADLINE_EXCEEDED": 504,
    "ABORTED": 502,
}


class _HTTPHandler(BaseHTTPRequestHandler):
    """``POST /v1/traces`` with ``application/x-protobuf`` or ``application/json`` (gzip or not)."""

    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, status: int, message: str) -> None:
        self._answer(status, message.encode() + b"\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/v1/traces":
            self._refuse(404, "only /v1/traces is served")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._refuse(411, "Content-Length required")
            return
        if not 0 <= length <= MAX_HTTP_BODY:
            self.close_connection = True
            self._refuse(413, f"body larger than {MAX_HTTP_BODY} bytes")
            return
        body = self.rfile.read(length)
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        if encoding in ("gzip", "deflate"):
            try:
                decompressor = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
                body = decompressor.decompress(body, MAX_HTTP_BODY)
                if decompressor.unconsumed_tail:
                    self._refuse(413, f"body larger than {MAX_HTTP_BODY} bytes once decompressed")
                    return
            except (zlib.error, gzip.BadGzipFile):
                self._refuse(400, f"body is not valid {encoding}")
                return
        elif encoding not in ("", "identity"):
            self._refuse(415, "unsupported Content-Encoding")
            return
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        try:
            if content_type == "application/x-protobuf":
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            elif content_type == "application/json":
                request = parse_otlp_json(body)
            else:
                self._refuse(415, "Content-Type must be application/x-protobuf or application/json")
                return
        except (DecodeError, ValueError, RecursionError) as error:
            self._refuse(400, f"cannot decode the request: {type(error).__name__}")
            return
        receiver = self.server.receiver
        if receiver.delay:
            time.sleep(receiver.delay)
        headers = {key.lower(): value for key, value in self.headers.items()}
        receiver._record(ReceivedRequest(request=request, metadata=headers, transport="http"))
        if receiver.status_code is not None:
            self._refuse(_HTTP_STATUS.get(receiver.status_code.name, 400), receiver.status_code.name)
            return
        if content_type == "application/json":
            self._answer(200, b"{}", "application/json")
        else:
            response = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self._answer(200, response, "application/x-protobuf")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # SO_REUSEADDR, as gRPC sets it: restart at once after a crash

    def __init__(self, address: tuple[str, int], receiver: OTLPReceiver) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.receiver = receiver
        super().__init__(address, _HTTPHandler)


def _probe_bind(host: str, port: int) -> None:
    """Bind the port as gRPC will (``SO_REUSEADDR``, no ``SO_REUSEPORT``), to get one clear OSError.

    Without ``SO_REUSEADDR`` this probe failed for about 60 s after a crash (connections of the old
    process in ``TIME_WAIT``), though gRPC itself would have bound; a live listener still fails it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


class OTLPReceiver:
    """A real OTLP/gRPC trace receiver on a loopback port (0 picks a free one), optionally OTLP/HTTP.

    ``status_code`` makes every Export fail with that gRPC code (its HTTP equivalent over HTTP);
    ``delay`` holds each answer back that many seconds. Both may be changed while the receiver runs.
    ``keep`` bounds the requests kept (the newest; 0 keeps none); ``on_request`` sees every request,
    and an exception it raises is logged, never sent back to the exporter. ``http_port`` (0 for a
    free one) also serves OTLP/HTTP ``POST /v1/traces``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        status_code: Optional[grpc.StatusCode] = None,
        delay: float = 0.0,
        on_request: Optional[Callable[[ReceivedRequest], None]] = None,
        keep: int = DEFAULT_KEEP,
        http_port: Optional[int] = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.requested_http_port = http_port
        self.status_code = status_code
        self.delay = delay
        self._on_request = on_request
        self._requests: deque[ReceivedRequest] = deque(maxlen=max(keep, 0))
        self._changed = threading.Condition()
        self._server: Optional[grpc.Server] = None
        self._http: Optional[_HTTPServer] = None
        self._http_thread: Optional[threading.Thread] = None
        self.port = 0
        self.http_port = 0

    @property
    def endpoint(self) -> str:
        """The gRPC ``host:port`` form, as a TracingConfiguration writes it."""
        return f"{self._url_host}:{self.port}"

    @property
    def http_endpoint(self) -> str:
        """The OTLP/HTTP traces URL (``http://host:port/v1/traces``), when HTTP is served."""
        return f"http://{self._url_host}:{self.http_port}/v1/traces"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def start(self) -> OTLPReceiver:
        if self.requested_port:
            _probe_bind(self.host, self.requested_port)
        if self.requested_http_port is not None:
            http = _HTTPServer((self.host, self.requested_http_port), self)  # OSError when taken
            self.http_port = http.server_address[1]
        # No SO_REUSEPORT: a second receiver on a taken port must fail, not silently share it.
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), server)  # type: ignore[no-untyped-call]
        try:
            self.port = server.add_insecure_port(f"{self._url_host}:{self.requested_port}")
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            if self.requested_http_port is not None:
                http.server_close()
            raise OSError(f"cannot listen on {self.host}:{self.requested_port}")
        server.start()
        self._server = server
        if self.requested_http_port is not None:
            self._http = http
            self._http_thread = threading.Thread(
                target=http.serve_forever, kwargs={"poll_interval": 0.1}, name="otlp-http", daemon=True
            )
            self._http_thread.start()
        return self

    def stop(self, grace: Optional[float] = None) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
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
        """One gRPC Export call: the configured delay, the record, the configured answer."""
        if self.delay:
            time.sleep(self.delay)
        metadata = {key.lower(): value for key, value in context.invocation_metadata()}
        self._record(ReceivedRequest(request=request, metadata=metadata))
        code = self.status_code
        if code is not None:
            context.abort(code, f"receiver configured to answer {code.name}")
        return trace_service_pb2.ExportTraceServiceResponse()

    def _record(self, received: ReceivedRequest) -> None:
        with self._changed:
            self._requests.append(received)
            self._changed.notify_all()
        if self._on_request is not None:
            try:
                self._on_request(received)
            except Exception:  # a viewer's fault must not fail the exporter's RPC
                _logger.exception("on_request failed; the request was still accepted")

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
