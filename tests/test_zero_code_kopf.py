"""A kopf operator under ``opentelemetry-instrument`` with the k8s distro, against the fake apiserver."""

from __future__ import annotations

import time
from typing import Any, Callable

from fake_cluster import FakeCluster
from zero_code import OTLPReceiver, distro_env, instrumented, one, read_report, stop


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {predicate}")


def test_kopf_operator_handler_spans_and_correlated_per_object_logs(otlp_receiver: OTLPReceiver) -> None:
    with FakeCluster().running() as cluster:
        env = distro_env(
            otlp_receiver,
            K8S_OTEL_TEST_APISERVER=cluster.host,
            OTEL_PYTHON_LOG_CORRELATION="true",
            OTEL_SERVICE_NAME="kopf-operator",
        )
        with instrumented("apps.kopf_operator", env) as process:
            read_report(process)
            wait_for(lambda: any("watch=true" in r.query for r in cluster.seen("GET", "/kopfexamples")))
            cluster.create(
                "kopfexamples", {"metadata": {"name": "ex1", "namespace": "team-a"}, "spec": {"size": 1}}
            )
            wait_for(lambda: cluster.field("kopfexamples", "team-a", "ex1", "status", "seen"))
            returncode, stderr = stop(process, timeout=30)
    assert returncode == 0, stderr  # kopf handles SIGTERM and exits normally; atexit flushed
    spans = otlp_receiver.wait_for_spans(2, timeout=5)
    handler = one([s for s in spans if s.name == "kopf.on.create kopfexamples.kopf.dev"], "handler span")
    assert handler.attributes["name"] == "ex1"
    assert handler.resource["service.name"] == "kopf-operator"
    patches = [s for s in spans if s.kind == "CLIENT" and s.parent_span_id == handler.span_id]
    assert patches, [(s.name, s.kind) for s in spans]  # kopf's own API call, a child of the handler
    line = one([line for line in stderr.splitlines() if "reconciling ex1" in line], "log line")
    assert f"trace_id={handler.trace_id} span_id={handler.span_id}" in line
    assert "resource.service.name=kopf-operator trace_sampled=True" in line
