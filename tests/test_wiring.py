"""configure() end to end: real OTLP export to the real receiver, from arguments, files and env vars.

Tests that install the global TracerProvider run in a subprocess (one global provider per process).
"""

from __future__ import annotations

import http.server
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import k8s_otel
import subprocess_scripts
from k8s_otel._exporter import build_exporter
from k8s_otel._settings import Setting, resolve_settings
from k8s_otel._wiring import TracingHandle
from k8s_otel.cli._receiver import OTLPReceiver

TOKEN = "s3cr3t-t0ken"
LOW_64 = (1 << 64) - 1


@pytest.fixture
def handles() -> Iterator[list[TracingHandle]]:
    """Handles made by a test, shut down afterwards whatever happens."""
    made: list[TracingHandle] = []
    yield made
    for handle in made:
        handle.shutdown(2.0)


def local(handles: list[TracingHandle], **kwargs: object) -> TracingHandle:
    handle = k8s_otel.configure(install=False, **kwargs)  # type: ignore[arg-type]
    handles.append(handle)
    return handle


def exports_nothing(handle: TracingHandle) -> bool:
    """A sampled span goes to no exporter: nothing counts it as ended (docs/export.md)."""
    with handle.tracer_provider.get_tracer("t").start_as_current_span("sampled"):
        pass
    return handle.statistics().ended == 0


def remote_parent(sampled: bool) -> object:
    context = SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else 0),
    )
    return trace.set_span_in_context(NonRecordingSpan(context))


def test_env_driven_export(
    otlp_receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch, handles: list[TracingHandle]
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{otlp_receiver.endpoint}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{TOKEN}")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.cluster.name=prod,k8s.namespace.name=team-a")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "my-webhook")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "k8s_per_million")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "1000000")
    handle = local(handles)
    with handle.tracer_provider.get_tracer("test").start_as_current_span("root"):
        pass
    assert handle.force_flush(10)
    [span] = otlp_receiver.wait_for_spans(1)
    assert span.name == "root"
    assert span.resource["service.name"] == "my-webhook"
    assert span.resource["k8s.cluster.name"] == "prod"
    assert span.resource["k8s.namespace.name"] == "team-a"
    assert otlp_receiver.requests[0].metadata["authorization"] == f"Bearer {TOKEN}"


def test_file_driven_export_is_plaintext_on_a_bare_host_port(
    otlp_receiver: OTLPReceiver, tmp_path: Path, handles: list[TracingHandle]
) -> None:
    path = tmp_path / "tracing.yaml"
    path.write_text(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\n"
        f"endpoint: {otlp_receiver.endpoint}\nsamplingRatePerMillion: 1000000\n"
    )
    # The stock exporter would use TLS on a bare host:port and never reach a plaintext collector.
    handle = local(handles, config_file=path, service_name="ctl")
    assert (handle.settings.endpoint.source, handle.settings.insecure.value) == ("file", True)
    with handle.tracer_provider.get_tracer("test").start_as_current_span("from-file"):
        pass
    assert handle.force_flush(10)
    assert [s.name for s in otlp_receiver.wait_for_spans(1)] == ["from-file"]


def test_sampling_end_to_end(otlp_receiver: OTLPReceiver, handles: list[TracingHandle]) -> None:
    handle = local(handles, endpoint=otlp_receiver.endpoint, sampling_rate_per_million=500_000)
    tracer = handle.tracer_provider.get_tracer("test")
    roots = []
    for _ in range(200):
        with tracer.start_as_current_span("root") as span:
            roots.append(span.get_span_context().trace_id)
    with tracer.start_as_current_span("child-of-sampled", context=remote_parent(True)):  # type: ignore[arg-type]
        pass
    with tracer.start_as_current_span("child-of-unsampled", context=remote_parent(False)):  # type: ignore[arg-type]
        pass
    assert handle.force_flush(10)
    expected = {f"{t:032x}" for t in roots if (t & LOW_64) >> 1 < (1 << 62)}
    assert 0 < len(expected) < 200
    spans = otlp_receiver.wait_for_spans(len(expected) + 1)
    assert {s.trace_id for s in spans if s.name == "root"} == expected
    [child] = [s for s in spans if s.name != "root"]
    assert (child.name, child.parent_span_id, child.trace_id) == (
        "child-of-sampled",
        "00f067aa0ba902b7",
        "4bf92f3577b34da6a3ce929d0e0e4736",
    )


def test_unset_rate_never_samples_roots(otlp_receiver: OTLPReceiver, handles: list[TracingHandle]) -> None:
    handle = local(handles, endpoint=otlp_receiver.endpoint)
    tracer = handle.tracer_provider.get_tracer("test")
    for _ in range(50):
        with tracer.start_as_current_span("root"):
            pass
    with tracer.start_as_current_span("child", context=remote_parent(True)):  # type: ignore[arg-type]
        pass
    assert handle.force_flush(10)
    assert [s.name for s in otlp_receiver.wait_for_spans(1)] == ["child"]


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_compression_values_that_the_stock_exporter_rejects(
    otlp_receiver: OTLPReceiver,
    monkeypatch: pytest.MonkeyPatch,
    handles: list[TracingHandle],
    compression: str,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
    handle = local(handles, endpoint=otlp_receiver.endpoint, sampling_rate_per_million=1_000_000)
    with handle.tracer_provider.get_tracer("test").start_as_current_span("compressed"):
        pass
    assert handle.force_flush(10)
    assert [s.name for s in otlp_receiver.wait_for_spans(1)] == ["compressed"]


def test_timeout_env_is_milliseconds(
    otlp_receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch, handles: list[TracingHandle]
) -> None:
    # 300 read as seconds (the stock exporter) would hold this flush for five minutes.
    otlp_receiver.delay = 3.0
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "300")
    monkeypatch.setenv("OTEL_BSP_EXPORT_TIMEOUT", "500")  # retried for 0.5 s after the first failure
    handle = local(handles, endpoint=otlp_receiver.endpoint, sampling_rate_per_million=1_000_000)
    with handle.tracer_provider.get_tracer("test").start_as_current_span("slow"):
        pass
    assert handle.force_flush(timeout=2.5)  # each attempt gave up after 0.3 s
    statistics = handle.statistics()
    assert (statistics.failed, statistics.last_error) == (1, "DEADLINE_EXCEEDED")


def test_shutdown_is_bounded_when_the_collector_is_gone(handles: list[TracingHandle]) -> None:
    receiver = OTLPReceiver().start()
    endpoint = receiver.endpoint
    receiver.stop()  # nothing listens there now: every export is refused and retried
    handle = local(handles, endpoint=endpoint, sampling_rate_per_million=1_000_000)
    with handle.tracer_provider.get_tracer("test").start_as_current_span("lost"):
        pass
    started = time.monotonic()
    finished = handle.shutdown(timeout=1.0)
    elapsed = time.monotonic() - started
    assert not finished
    assert elapsed < 3.0


def test_shutdown_delivers_what_is_queued(otlp_receiver: OTLPReceiver, handles: list[TracingHandle]) -> None:
    handle = local(handles, endpoint=otlp_receiver.endpoint, sampling_rate_per_million=1_000_000)
    for index in range(20):
        with handle.tracer_provider.get_tracer("test").start_as_current_span(f"s{index}"):
            pass
    assert handle.shutdown(timeout=10)
    assert len(otlp_receiver.spans()) == 20
    assert handle.shutdown()  # twice is fine


class _OTLPHTTPHandler(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, ExportTraceServiceRequest]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.received.append((self.path, request))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def otlp_http_receiver() -> Iterator[tuple[str, list[tuple[str, ExportTraceServiceRequest]]]]:
    handler = type("Handler", (_OTLPHTTPHandler,), {"received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.received
    finally:
        server.shutdown()
        server.server_close()


def test_operator_http_protobuf_is_honoured(
    otlp_http_receiver: tuple[str, list[tuple[str, ExportTraceServiceRequest]]],
    monkeypatch: pytest.MonkeyPatch,
    handles: list[TracingHandle],
) -> None:
    url, received = otlp_http_receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    handle = local(handles, sampling_rate_per_million=1_000_000)
    with handle.tracer_provider.get_tracer("test").start_as_current_span("over-http"):
        pass
    assert handle.force_flush(10)
    [(path, request)] = received
    assert path == "/v1/traces"
    assert request.resource_spans[0].scope_spans[0].spans[0].name == "over-http"


def test_http_protobuf_without_the_exporter_is_refused_not_sent_as_grpc(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, handles: list[TracingHandle]
) -> None:
    # The optional dependency is absent: make its import fail as it would in a bare install.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    exporter, reason = build_exporter(resolve_settings())
    assert exporter is None
    assert reason is not None and "k8s-otel[http]" in reason  # names the extra to install
    with caplog.at_level(logging.DEBUG):
        handle = local(handles, sampling_rate_per_million=1_000_000)
    assert [r.levelno for r in caplog.records if "k8s-otel[http]" in r.getMessage()] == [logging.ERROR]
    assert exports_nothing(handle)


def test_unsupported_protocol_exports_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, handles: list[TracingHandle]
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with caplog.at_level(logging.DEBUG):
        handle = local(handles, sampling_rate_per_million=1_000_000)
    assert exports_nothing(handle)
    # Reported once, where the user reads problems, and logged once, at ERROR, naming the value.
    assert len([p for p in handle.settings.problems if "http/json" in p]) == 1
    assert [r.levelno for r in caplog.records if "'http/json'" in r.getMessage()] == [logging.ERROR]


def test_no_secret_reaches_logs_or_reprs(
    otlp_receiver: OTLPReceiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    handles: list[TracingHandle],
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization={TOKEN},{TOKEN}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "bogus")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "k8s_per_million")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "oops")
    with caplog.at_level(logging.DEBUG):
        handle = local(handles, endpoint=otlp_receiver.endpoint)
        handle.force_flush(5)
    assert caplog.records  # the bad values were reported
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(handle) and TOKEN not in repr(handle.settings)


def test_fork_child_builds_its_own_exporter(
    otlp_receiver: OTLPReceiver, handles: list[TracingHandle]
) -> None:
    handle = local(handles, endpoint=otlp_receiver.endpoint, sampling_rate_per_million=1_000_000)
    tracer = handle.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("parent-before-fork"):
        pass
    assert handle.force_flush(10)  # the parent's gRPC channel now exists
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            with tracer.start_as_current_span("in-child"):
                pass
            code = 0 if handle.force_flush(10) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(s.name for s in otlp_receiver.wait_for_spans(2)) == ["in-child", "parent-before-fork"]


# --- the global install, in subprocesses -------------------------------------------------------


def run(scenario: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    return subprocess_scripts.run(
        "wiring", scenario, *args, env={**os.environ, **(env or {})}, timeout=timeout
    )


def test_second_call_returns_the_same_handle_or_raises(otlp_receiver: OTLPReceiver) -> None:
    result = run("second_call", otlp_receiver.endpoint, TOKEN)
    assert result.returncode == 0, result.stderr
    assert [s.name for s in otlp_receiver.spans()] == ["once"]  # one exporter, not two
    assert result.stdout.startswith("AlreadyConfiguredError ")
    assert "'other:4317'" in result.stdout and "<redacted>" in result.stdout  # what differs, hidden
    assert TOKEN not in result.stdout + result.stderr


def sigterm_after_ready(*args: str) -> tuple[int, str]:
    """Run a scenario until it prints "ready", send SIGTERM, return its exit code and later output."""
    process = subprocess.Popen(
        subprocess_scripts.command("wiring", *args),
        env=subprocess_scripts.environment(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=20), process.stdout.read()
    finally:
        process.kill()
        process.wait()


def test_sigterm_flushes_then_dies_by_sigterm(otlp_receiver: OTLPReceiver) -> None:
    returncode, _ = sigterm_after_ready("sigterm_flush", otlp_receiver.endpoint)
    assert returncode == -signal.SIGTERM  # the default action still happens
    assert [s.name for s in otlp_receiver.spans()] == ["before-sigterm"]


def test_sigterm_chains_the_application_handler(otlp_receiver: OTLPReceiver) -> None:
    returncode, output = sigterm_after_ready("sigterm_chain", otlp_receiver.endpoint)
    assert (returncode, output.strip()) == (0, "app handler ran")
    assert [s.name for s in otlp_receiver.spans()] == ["chained"]


def test_exit_flushes_through_atexit(otlp_receiver: OTLPReceiver) -> None:
    result = run("exit_flush", otlp_receiver.endpoint, "at-exit")
    assert result.returncode == 0, result.stderr
    assert [s.name for s in otlp_receiver.spans()] == ["at-exit"]


def test_exit_is_not_held_up_by_a_dead_collector() -> None:
    receiver = OTLPReceiver().start()
    endpoint = receiver.endpoint
    receiver.stop()
    started = time.monotonic()
    result = run("exit_flush", endpoint, "lost", timeout=30)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15  # 5 s shutdown budget plus interpreter start


def test_sdk_disabled_still_propagates(otlp_receiver: OTLPReceiver) -> None:
    result = run("sdk_disabled", otlp_receiver.endpoint, env={"OTEL_SDK_DISABLED": "true"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "_PropagatingTracerProvider",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ]
    assert otlp_receiver.spans() == []


def test_a_provider_installed_by_someone_else_is_left_alone() -> None:
    result = run("foreign_provider")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("WARNING:k8s_otel")]
    assert "TracerProvider" in warning  # names what holds the global slot


def test_sampler_entry_point_through_the_sdk_configurator(otlp_receiver: OTLPReceiver) -> None:
    # The zero-code path: the SDK's own configurator (what opentelemetry-instrument runs) loads the
    # sampler by entry-point name and passes OTEL_TRACES_SAMPLER_ARG verbatim.
    env = {
        "OTEL_TRACES_SAMPLER": "k8s_per_million",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{otlp_receiver.endpoint}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
    }
    result = run("sdk_configurator", env={**env, "OTEL_TRACES_SAMPLER_ARG": "1000000"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ParentBased{root:TraceIDRatioBased{1},")
    assert len(otlp_receiver.spans()) == 20

    otlp_receiver.clear()
    result = run("sdk_configurator", env={**env, "OTEL_TRACES_SAMPLER_ARG": "ten percent"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ParentBased{root:AlwaysOffSampler,")  # not the SDK's always-on fallback
    assert "OTEL_TRACES_SAMPLER_ARG" in result.stderr and "'ten percent'" in result.stderr
    assert otlp_receiver.spans() == []


def test_shutdown_budget_from_argument_env_and_default(
    monkeypatch: pytest.MonkeyPatch, handles: list[TracingHandle]
) -> None:
    assert resolve_settings().shutdown_timeout_millis == Setting(5000.0, "default")
    monkeypatch.setenv("K8S_OTEL_SHUTDOWN_TIMEOUT", "1500")
    assert resolve_settings().shutdown_timeout_millis == Setting(1500.0, "env", "K8S_OTEL_SHUTDOWN_TIMEOUT")
    assert local(handles).shutdown_timeout == 1.5
    assert local(handles, shutdown_timeout=0.25).shutdown_timeout == 0.25  # the argument wins
    monkeypatch.setenv("K8S_OTEL_SHUTDOWN_TIMEOUT", "5s")
    settings = resolve_settings()
    assert settings.shutdown_timeout_millis == Setting(5000.0, "default")
    assert any("K8S_OTEL_SHUTDOWN_TIMEOUT" in problem for problem in settings.problems)
    for bad in (0, -1.0, float("nan"), float("inf"), True, "5"):
        with pytest.raises(ValueError, match="shutdown_timeout"):
            k8s_otel.configure(install=False, shutdown_timeout=bad)  # type: ignore[arg-type]


def test_the_resource_hashes_once_and_equals_the_sdks(handles: list[TracingHandle]) -> None:
    from opentelemetry.sdk.resources import Resource

    from k8s_otel._export import StableResource

    handle = local(handles, service_name="my-webhook", resource={"k8s.cluster.name": "prod"})
    provider = handle.tracer_provider
    assert isinstance(provider, TracerProvider)
    resource = provider.resource
    assert isinstance(resource, StableResource)
    plain = Resource(dict(resource.attributes), resource.schema_url)
    assert resource == plain
    assert hash(resource) == hash(plain)
    assert resource._stable_hash == hash(plain)  # kept: the encoder hashes it once per span
    assert resource.attributes["service.name"] == "my-webhook"
    assert resource.attributes["k8s.cluster.name"] == "prod"
    merged = resource.merge(Resource({"process.pid": 4242}))  # what the provider does after a fork
    assert isinstance(merged, StableResource)
    assert merged.attributes["process.pid"] == 4242
    assert merged.attributes["service.name"] == "my-webhook"
