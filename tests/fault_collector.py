"""A fault-injecting OTLP collector for tests, built on the real receiver (``k8s_otel.cli._receiver``).

Faults: ``down`` (nothing listens: connection refused), ``refusing`` (every Export answered with an
error status), ``blackhole`` (accepts TCP, never answers), ``slow`` (answers late), ``restart`` on
the same port, and ``SilentProxy``: forwards, then goes silent on its open connections (no FIN, no
RST) while new connections reach a live receiver.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from concurrent import futures
from typing import Any, Optional

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from k8s_otel.cli._receiver import OTLPReceiver, _TraceService

__all__ = [
    "GO_DEFAULT_ENFORCEMENT",
    "Blackhole",
    "FaultCollector",
    "FaultReceiver",
    "SilentProxy",
    "free_port",
]

#: A Go gRPC server's default keepalive enforcement policy (the Collector's): pings without data
#: more often than every 5 minutes earn a strike; more than 2 strikes earn GOAWAY too_many_pings.
GO_DEFAULT_ENFORCEMENT: tuple[tuple[str, Any], ...] = (
    ("grpc.http2.min_ping_interval_without_data_ms", 300_000),
    ("grpc.http2.max_ping_strikes", 2),
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FaultReceiver(OTLPReceiver):
    """The real receiver, rebinding its port at once after a stop (SO_REUSEADDR, as gRPC servers
    do) and with chosen server options; it records each call's peer (one per TCP connection)."""

    def __init__(
        self, port: int = 0, *, server_options: tuple[tuple[str, Any], ...] = (), **kwargs: Any
    ) -> None:
        super().__init__(port=port, **kwargs)
        self.server_options = server_options
        self.peers: list[str] = []

    def start(self) -> FaultReceiver:
        options = [("grpc.so_reuseport", 0), *self.server_options]
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), server)  # type: ignore[no-untyped-call]
        self.port = server.add_insecure_port(f"{self.host}:{self.requested_port}")
        if self.port == 0:
            raise OSError(f"cannot listen on {self.host}:{self.requested_port}")
        self.requested_port = self.port  # a restart comes back on the same port
        server.start()
        self._server = server
        return self

    def _handle(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.peers.append(context.peer())
        return super()._handle(request, context)


class Blackhole:
    """Listens and accepts, then never reads or answers (a wedged collector)."""

    def __init__(self, port: int = 0) -> None:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._held: list[socket.socket] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stopped:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(connection)

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for connection in self._held:
            connection.close()
        self._thread.join(5)


class SilentProxy:
    """A TCP proxy to ``upstream``; ``go_silent()`` freezes every open connection (they stay open and
    are never answered again, no FIN, no RST) and sends new connections to ``upstream`` (which may
    be changed)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._connections: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self._threads: list[threading.Thread] = []
        self.accepted = 0
        self._stopped = threading.Event()
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def go_silent(self) -> None:
        with self._lock:
            for _, _, silent in self._connections:
                silent.set()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                client.close()
                continue
            silent = threading.Event()
            with self._lock:
                self.accepted += 1
                self._connections.append((client, server, silent))
            pump = threading.Thread(target=self._pump, args=(client, server, silent), daemon=True)
            pump.start()
            self._threads.append(pump)

    def _pump(self, client: socket.socket, server: socket.socket, silent: threading.Event) -> None:
        peers = {client: server, server: client}
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ)
            selector.register(server, selectors.EVENT_READ)
            while not self._stopped.is_set() and not silent.is_set():
                for key, _ in selector.select(0.05):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = source.recv(65536)
                    except OSError:
                        data = b""
                    if silent.is_set():
                        break  # swallowed: the silent connection never delivers again
                    if not data:
                        return self._close(client, server)
                    try:
                        peers[source].sendall(data)
                    except OSError:
                        return self._close(client, server)
        # Silent: hold both sockets open, read nothing, until the proxy stops.
        self._stopped.wait()
        self._close(client, server)

    @staticmethod
    def _close(*sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for thread in self._threads:
            thread.join(5)


class FaultCollector:
    """One collector address whose behaviour a test changes: up, down, refusing, blackhole, slow."""

    def __init__(self) -> None:
        self.receiver = FaultReceiver().start()
        self.port = self.receiver.port
        self._blackhole: Optional[Blackhole] = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def down(self) -> None:
        """Nothing listens: connections are refused."""
        self.receiver.stop(0)
        if self._blackhole is not None:
            self._blackhole.stop()
            self._blackhole = None

    def up(self) -> None:
        self.down()
        self.receiver.start()

    def restart(self, outage: float) -> threading.Thread:
        """Stop now, come back on the same port after ``outage`` seconds (in the background)."""
        self.down()

        def back() -> None:
            time.sleep(outage)
            self.receiver.start()

        thread = threading.Thread(target=back, daemon=True)
        thread.start()
        return thread

    def refusing(self, code: grpc.StatusCode = grpc.StatusCode.RESOURCE_EXHAUSTED) -> None:
        self.receiver.status_code = code

    def slow(self, delay: float) -> None:
        self.receiver.delay = delay

    def blackhole(self) -> None:
        self.down()
        self._blackhole = Blackhole(self.port)

    def stop(self) -> None:
        self.down()
