"""The examples: manifests parse, TracingConfiguration files validate, the example webhooks run for real."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8s_otel.config import (
    load_tracing_configuration,
    parse_tracing_configuration,
    validate_tracing_configuration,
)
from k8s_otel.receiver import OTLPReceiver

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MANIFESTS = EXAMPLES / "manifests"


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d is not None]


@pytest.mark.parametrize("path", sorted(MANIFESTS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_manifest_parses(path: Path) -> None:
    assert documents(path.name)


@pytest.mark.parametrize("name", ["tracing-apiserver.yaml", "kubelet-config.yaml"])
def test_tracing_configuration_files_validate(name: str) -> None:
    config = load_tracing_configuration(MANIFESTS / name)
    assert config.sampling_rate_per_million == 100


def test_the_webhook_configmap_holds_a_valid_tracing_configuration() -> None:
    [config_map] = [d for d in documents("webhook-deployment.yaml") if d["kind"] == "ConfigMap"]
    config = parse_tracing_configuration(config_map["data"]["tracing.yaml"])
    assert validate_tracing_configuration(config) == []
    assert config.endpoint == "otel-collector.observability.svc:4317"


def test_the_deployment_gives_the_resource_detector_what_it_reads() -> None:
    [deployment] = [d for d in documents("webhook-deployment.yaml") if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {
        e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", e.get("value"))
        for e in container["env"]
    }
    assert env["POD_IP"] == "status.podIP"  # what the k8sattributes processor matches first
    assert env["POD_UID"] == "metadata.uid"
    assert env["POD_NAME"] == "metadata.name"
    assert env["POD_NAMESPACE"] == "metadata.namespace"
    assert env["NODE_NAME"] == "spec.nodeName"
    assert env["K8S_OTEL_TRACING_CONFIG"] == "/etc/k8s-otel/tracing.yaml"


def test_the_webhook_configuration_points_at_the_example_route() -> None:
    [config] = documents("validating-webhook.yaml")
    [webhook] = config["webhooks"]
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["clientConfig"]["service"]["path"] == "/validate"
    assert '@app.post("/validate")' in (EXAMPLES / "flask_webhook.py").read_text()


def test_the_collector_config() -> None:
    [config] = documents("otel-collector.yaml")
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    association = config["processors"]["k8sattributes"]["pod_association"]
    assert association[0]["sources"][0] == {"from": "resource_attribute", "name": "k8s.pod.ip"}
    assert config["service"]["pipelines"]["traces"] == {
        "receivers": ["otlp"],
        "processors": ["k8sattributes", "batch"],
        "exporters": ["debug"],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(argv: list[str], port: int, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        argv, cwd=EXAMPLES, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                time.sleep(0.1)
        yield process
    finally:
        # The server thread ends the span when it closes the response, just after the client has
        # read it; a request still in flight at SIGTERM is lost by design, so let it finish first.
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        finally:
            process.kill()


def admission_call(port: int, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    import http.client

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(
        "POST",
        "/validate?timeout=10s",
        body=json.dumps(body),
        headers={"Content-Type": "application/json", "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    return trace_id, payload


@pytest.mark.parametrize(
    ("argv", "spec", "allowed"),
    [
        ([sys.executable, "flask_webhook.py"], {"replicas": 50}, False),
        (
            [
                sys.executable,
                "-m",
                "uvicorn",
                "fastapi_webhook:app",
                "--host",
                "127.0.0.1",
                "--log-level",
                "warning",
            ],
            {"containers": [{"name": "app", "resources": {"limits": {"cpu": "1"}}}]},
            True,
        ),
    ],
    ids=["flask", "fastapi"],
)
def test_example_webhooks_join_the_apiserver_trace(
    otlp_receiver: OTLPReceiver, argv: list[str], spec: dict[str, Any], allowed: bool
) -> None:
    port = free_port()
    if "uvicorn" in argv:
        argv = [*argv, "--port", str(port)]
    env = {"PORT": str(port), "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{otlp_receiver.endpoint}"}
    uid = "705ab4f5-6393-11e8-b7cc-42010a800002"
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "web",
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "u"},
            "object": {"spec": spec},
        },
    }
    with running(argv, port, env):
        trace_id, answer = admission_call(port, review)
    assert answer["response"] == {**answer["response"], "uid": uid, "allowed": allowed}
    [span] = otlp_receiver.wait_for_spans(1)  # flushed by SIGTERM/exit
    assert (span.trace_id, span.parent_span_id, span.name) == (trace_id, "00f067aa0ba902b7", "POST /validate")
    assert span.attributes["http.route"] == "/validate"
    assert span.attributes["UID"] == uid
    assert span.attributes["response.allowed"] is allowed
