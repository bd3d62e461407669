"""A connection that goes silent is replaced; no keepalive a default Go collector would punish.

Real gRPC on 127.0.0.1: the real receiver behind a TCP proxy that stops forwarding without a FIN or
an RST, and a grpcio server enforcing the Go server's default keepalive policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

import k8s_otel
from fault_collector import GO_DEFAULT_ENFORCEMENT, FaultReceiver, SilentProxy
from k8s_otel._grpc_export import HealingOTLPSpanExporter
from k8s_otel._wiring import TracingHandle


@pytest.fixture
def fast_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scaled-down timings: 1 s per export attempt, 50 ms schedule delay, 10 s retry window."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1000")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_BSP_EXPORT_TIMEOUT", "10000")


@pytest.fixture
def handles() -> Iterator[list[TracingHandle]]:
    made: list[TracingHandle] = []
    yield made
    for handle in made:
        handle.shutdown(1.0)


def grpc_exporter(handle: TracingHandle) -> HealingOTLPSpanExporter:
    processor = handle._processor
    assert processor is not None
    exporter = processor.span_exporter.inner._exporter
    assert isinstance(exporter, HealingOTLPSpanExporter)
    return exporter


def rebuilds(handle: TracingHandle) -> int:
    """New connections opened for silence: channel rebuilds, or exporter replacements (SDK < 1.40)."""
    processor = handle._processor
    assert processor is not None
    fork_safe = processor.span_exporter.inner
    return int(fork_safe.rebuilds) + grpc_exporter(handle).rebuilds


def emit(handle: TracingHandle, count: int, prefix: str) -> None:
    tracer = handle.tracer_provider.get_tracer("test")
    for index in range(count):
        with tracer.start_as_current_span(f"{prefix}{index}"):
            pass


def test_a_silent_connection_is_replaced_and_nothing_is_lost(
    fast_export: None, handles: list[TracingHandle]
) -> None:
    first, second = FaultReceiver().start(), FaultReceiver().start()
    proxy = SilentProxy(first.port)
    try:
        handle = k8s_otel.configure(
            endpoint=proxy.endpoint, sampling_rate_per_million=1_000_000, install=False
        )
        handles.append(handle)
        emit(handle, 10, "before")
        assert handle.force_flush(5)  # answered too: a reply swallowed by the silence means a resend
        assert len(first.spans()) == 10
        proxy.upstream = second.port  # a replacement collector at the same address
        proxy.go_silent()  # the open connection now swallows everything, with no FIN and no RST
        silenced = time.monotonic()
        emit(handle, 25, "after")
        spans = second.wait_for_spans(25, timeout=20)
        recovered = time.monotonic() - silenced
        assert sorted(s.name for s in spans) == sorted(f"after{i}" for i in range(25))
        assert rebuilds(handle) == 1
        assert proxy.accepted == 2  # one new connection, not one per attempt
        # Two deadline errors (1 s each here, 10 s by default) and the backoffs between them.
        assert recovered < 8
        assert handle.force_flush(5)
        stats = handle.statistics()
        assert (stats.ended, stats.exported, stats.dropped, stats.failed, stats.pending) == (35, 35, 0, 0, 0)
        assert stats.last_error == "DEADLINE_EXCEEDED"
    finally:
        proxy.stop()
        first.stop()
        second.stop()


def test_a_slow_collector_is_not_mistaken_for_a_silent_one(
    fast_export: None, handles: list[TracingHandle]
) -> None:
    receiver = FaultReceiver().start()
    receiver.delay = 0.5  # answers within the 1 s deadline
    try:
        handle = k8s_otel.configure(
            endpoint=receiver.endpoint, sampling_rate_per_million=1_000_000, install=False
        )
        handles.append(handle)
        for round_ in range(3):
            emit(handle, 5, f"r{round_}-")
            assert handle.force_flush(5)
        assert len(receiver.spans()) == 15
        assert rebuilds(handle) == 0
        assert len(set(receiver.peers)) == 1
    finally:
        receiver.stop()


def test_no_keepalive_faster_than_a_default_go_server_accepts(handles: list[TracingHandle]) -> None:
    receiver = FaultReceiver().start()
    try:
        handle = k8s_otel.configure(
            endpoint=receiver.endpoint, sampling_rate_per_million=1_000_000, install=False
        )
        handles.append(handle)
        emit(handle, 1, "x")
        assert handle.force_flush(5)
        options = dict(grpc_exporter(handle)._channel_options)
        assert int(options.get("grpc.keepalive_time_ms", 300_000)) >= 300_000
        assert int(options.get("grpc.keepalive_permit_without_calls", 0)) == 0
    finally:
        receiver.stop()


def _exports_with_an_idle_gap(send: Callable[[], None]) -> None:
    """Three exports, 4.5 s without calls (an eager client pings then, and is GOAWAYed after
    about 3 s by this policy), then three more exports."""
    for pause in (0.1, 0.1, 4.5, 0.1, 0.1, 0.0):
        send()
        time.sleep(pause)


def test_our_client_is_never_goawayed_by_the_go_default_policy(
    fast_export: None, handles: list[TracingHandle]
) -> None:
    receiver = FaultReceiver(server_options=GO_DEFAULT_ENFORCEMENT).start()
    try:
        handle = k8s_otel.configure(
            endpoint=receiver.endpoint, sampling_rate_per_million=1_000_000, install=False
        )
        handles.append(handle)

        def send() -> None:
            emit(handle, 3, "k")
            assert handle.force_flush(5)

        _exports_with_an_idle_gap(send)
        assert len(receiver.spans()) == 18
        assert len(set(receiver.peers)) == 1  # one connection throughout: no GOAWAY, no reconnect
        assert handle.statistics().failed == 0
    finally:
        receiver.stop()


def test_the_enforcement_server_does_goaway_an_eager_pinger() -> None:
    """The control: the same server does send GOAWAY too_many_pings to a client pinging every 200 ms."""
    receiver = FaultReceiver(server_options=GO_DEFAULT_ENFORCEMENT).start()
    channel = grpc.insecure_channel(
        receiver.endpoint,
        options=[
            ("grpc.keepalive_time_ms", 200),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.http2.min_sent_ping_interval_without_data_ms", 100),
        ],
    )
    try:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]

        def send() -> None:
            stub.Export(trace_service_pb2.ExportTraceServiceRequest(), timeout=5)

        _exports_with_an_idle_gap(send)
        assert len(set(receiver.peers)) >= 2  # GOAWAY: the client had to reconnect
    finally:
        channel.close()
        receiver.stop()


def test_with_the_defaults_spans_flow_again_within_a_minute(handles: list[TracingHandle]) -> None:
    """The acceptance case, unscaled: 10 s export timeout, 30 s retry window (about 22 s here)."""
    first, second = FaultReceiver().start(), FaultReceiver().start()
    proxy = SilentProxy(first.port)
    try:
        handle = k8s_otel.configure(
            endpoint=proxy.endpoint, sampling_rate_per_million=1_000_000, install=False
        )
        handles.append(handle)
        emit(handle, 512, "before")  # a full batch: exported at once, not after the 5 s delay
        assert len(first.wait_for_spans(512, timeout=10)) == 512
        deadline = time.monotonic() + 10
        while handle.statistics().exported < 512 and time.monotonic() < deadline:
            time.sleep(0.05)
        proxy.upstream = second.port
        proxy.go_silent()
        silenced = time.monotonic()
        emit(handle, 512, "after")
        spans = second.wait_for_spans(512, timeout=60)
        assert len(spans) == 512
        assert time.monotonic() - silenced < 60
        assert handle.statistics().failed == 0
    finally:
        proxy.stop()
        first.stop()
        second.stop()
