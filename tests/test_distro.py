"""The ``k8s`` distro and configurator: ``opentelemetry-instrument`` builds what ``configure()`` builds."""

from __future__ import annotations

import signal

import pytest
from opentelemetry.util._importlib_metadata import entry_points

from zero_code import OTLPReceiver, distro_env, instrumented, one, read_report, stop


def test_entry_points_are_registered() -> None:
    distro = one(list(entry_points(group="opentelemetry_distro", name="k8s")))
    configurator = one(list(entry_points(group="opentelemetry_configurator", name="k8s")))
    assert distro.value == "k8s_otel._distro:KubernetesDistro"
    assert configurator.value == "k8s_otel._distro:KubernetesConfigurator"


def test_distro_alone_selects_the_k8s_configurator(monkeypatch: pytest.MonkeyPatch) -> None:
    from k8s_otel._distro import KubernetesDistro

    monkeypatch.delenv("OTEL_PYTHON_CONFIGURATOR", raising=False)
    KubernetesDistro().configure()
    import os

    assert os.environ["OTEL_PYTHON_CONFIGURATOR"] == "k8s"
    monkeypatch.setenv("OTEL_PYTHON_CONFIGURATOR", "mine")
    KubernetesDistro().configure()
    assert os.environ["OTEL_PYTHON_CONFIGURATOR"] == "mine"  # a choice is never overridden


def test_opentelemetry_instrument_sets_up_what_configure_sets_up(otlp_receiver: OTLPReceiver) -> None:
    env = distro_env(
        otlp_receiver,
        OTEL_TRACES_SAMPLER_ARG="1000000",
        POD_NAME="web-7d4b9c-x2x",
        POD_NAMESPACE="team-a",
        OTEL_PYTHON_LOG_CORRELATION="true",
    )
    del env["OTEL_PYTHON_CONFIGURATOR"]  # the distro chooses ours
    with instrumented("apps.plain", env) as process:
        report = read_report(process)
        returncode, stderr = stop(process)
    assert report["provider"] == "TracerProvider"
    assert report["sampler"].startswith("ParentBased{root:TraceIDRatioBased{1},")
    assert report["propagator"] == "KubernetesPropagator"
    assert report["resource"]["k8s.pod.name"] == "web-7d4b9c-x2x"
    assert report["resource"]["service.name"] == "zero-code-test"
    assert "telemetry.auto.version" in report["resource"]
    # No handler of the app's: the SIGTERM flush delivered the span, then the process died of SIGTERM.
    assert returncode == -signal.SIGTERM, stderr
    span = one(otlp_receiver.wait_for_spans(1, timeout=5), "span")
    assert span.name == "work"
    assert span.trace_id == report["trace_id"]
    assert span.resource["k8s.namespace.name"] == "team-a"
    # OTEL_PYTHON_LOG_CORRELATION=true: the contrib format, with the span's ids, and empty outside it.
    inside = next(line for line in stderr.splitlines() if "inside the span" in line)
    outside = next(line for line in stderr.splitlines() if "outside the span" in line)
    assert f"trace_id={span.trace_id} span_id={span.span_id}" in inside
    assert "resource.service.name=zero-code-test trace_sampled=True" in inside
    assert "[trace_id= span_id= resource.service.name=zero-code-test trace_sampled=False]" in outside


def test_stock_variables_keep_their_meaning(otlp_receiver: OTLPReceiver) -> None:
    env = distro_env(otlp_receiver, OTEL_PROPAGATORS="tracecontext", OTEL_TRACES_SAMPLER_ARG="0")
    with instrumented("apps.plain", env) as process:
        report = read_report(process)
        stop(process)
    assert report["propagator"] == "CompositePropagator"  # OTEL_PROPAGATORS chose it, not us
    assert report["sampler"].startswith("ParentBased{root:AlwaysOffSampler,")


def test_sdk_disabled_builds_no_provider_and_the_app_runs(otlp_receiver: OTLPReceiver) -> None:
    env = distro_env(otlp_receiver, OTEL_SDK_DISABLED="true")
    with instrumented("apps.plain", env) as process:
        report = read_report(process)
        returncode, stderr = stop(process)
    assert report["provider"] == "_PropagatingTracerProvider"
    assert returncode == -signal.SIGTERM, stderr
    assert otlp_receiver.spans() == []


def test_the_operator_instrumentation_cr_exports_over_http_protobuf() -> None:
    # What the OpenTelemetry Operator injects for Python: OTLP/HTTP to the collector's 4318.
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    received: list[trace_service_pb2.ExportTraceServiceRequest] = []
    paths: list[str] = []
    arrived = threading.Event()

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            paths.append(self.path)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()
            arrived.set()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = distro_env(OTLPReceiver(), OTEL_BSP_SCHEDULE_DELAY="60000")
        for name in ("OTEL_PYTHON_DISTRO", "OTEL_PYTHON_CONFIGURATOR", "OTEL_TRACES_SAMPLER_ARG"):
            del env[name]
        env.update(operator_env(server.server_address[1]))
        env["OTEL_TRACES_SAMPLER_ARG"] = "1000000"
        with instrumented("apps.plain", env) as process:
            report = read_report(process)
            _, stderr = stop(process)
        assert arrived.wait(5), stderr
    finally:
        server.shutdown()
        server.server_close()
    spans = [span for rs in received[0].resource_spans for ss in rs.scope_spans for span in ss.spans]
    assert [span.name for span in spans] == ["work"]
    assert paths == ["/v1/traces"]
    assert spans[0].trace_id.hex() == report["trace_id"]
    assert json.dumps(report)  # the report itself is well-formed


def operator_env(collector_port: int) -> dict[str, str]:
    """What the operator injects from examples/manifests/instrumentation.yaml (its defaults included)."""
    from pathlib import Path

    import yaml

    manifest = Path(__file__).resolve().parents[1] / "examples" / "manifests" / "instrumentation.yaml"
    [instrumentation] = [
        d for d in yaml.safe_load_all(manifest.read_text()) if d["kind"] == "Instrumentation"
    ]
    spec = instrumentation["spec"]
    assert "propagators" not in spec and "sampler" not in spec  # neither enum knows ours
    assert spec["exporter"]["endpoint"].endswith(":4318")
    env = {e["name"]: e["value"] for e in spec["python"]["env"]}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{collector_port}"
    for name, value in {  # the operator's getDefaultPythonEnvVars, applied when unset
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
    }.items():
        env.setdefault(name, value)
    return env


def test_metrics_and_logs_exporters_keep_their_stock_meaning(otlp_receiver: OTLPReceiver) -> None:
    env = distro_env(otlp_receiver, OTEL_METRICS_EXPORTER="console", OTEL_TRACES_EXPORTER="console")
    with instrumented("apps.plain", env) as process:
        report = read_report(process)
        _, stderr = stop(process)
    assert report["meter_provider"] == "MeterProvider"  # the SDK's, set up as the stock configurator does
    # Reported once, as configure()'s settings problems are (docs/configuration.md, "Errors").
    assert (
        len([line for line in stderr.splitlines() if "OTEL_TRACES_EXPORTER" in line and "console" in line])
        == 1
    )
    assert [span.name for span in otlp_receiver.wait_for_spans(1, timeout=5)] == ["work"]  # still OTLP

    otlp_receiver.clear()
    with instrumented("apps.plain", distro_env(otlp_receiver)) as process:
        assert read_report(process)["meter_provider"] == "_ProxyMeterProvider"  # unset: none, as stock
        stop(process)
