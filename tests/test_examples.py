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

from k8s_otel._config import (
    load_tracing_configuration,
    parse_tracing_configuration,
    validate_tracing_configuration,
)
from k8s_otel.cli._receiver import OTLPReceiver

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MANIFESTS = EXAMPLES / "manifests"


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d is not None]


@pytest.mark.parametrize("path", sorted(MANIFESTS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_manifest_parses(path: Path) -> None:
    assert documents(path.name)


@pytest.mark.parametrize(
    ("name", "rate"),
    [
        ("tracing-apiserver.yaml", 100),
        ("kubelet-config.yaml", 100),
        ("tracing-apiserver-kind.yaml", 1_000_000),
    ],
)
def test_tracing_configuration_files_validate(name: str, rate: int) -> None:
    config = load_tracing_configuration(MANIFESTS / name)
    assert config.sampling_rate_per_million == rate


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


def admission_call(port: int, body: dict[str, Any], path: str = "/validate") -> tuple[str, dict[str, Any]]:
    import http.client

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(
        "POST",
        f"{path}?timeout=10s",
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


def test_the_crd_is_the_one_the_kopf_example_reconciles() -> None:
    crd, example = documents("kopfexample-crd.yaml")
    source = (EXAMPLES / "kopf_operator.py").read_text()
    assert 'GROUP, VERSION, PLURAL = "kopf.dev", "v1", "kopfexamples"' in source
    assert (crd["spec"]["group"], crd["spec"]["names"]["plural"]) == ("kopf.dev", "kopfexamples")
    assert [v["name"] for v in crd["spec"]["versions"]] == ["v1"]
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}
    assert example["apiVersion"] == "kopf.dev/v1" and example["kind"] == crd["spec"]["names"]["kind"]


def test_the_kopf_operator_example_traces_its_reconcile(otlp_receiver: OTLPReceiver, tmp_path: Path) -> None:
    from fake_cluster import FakeCluster, pod

    annotation_trace = "0af7651916cd43dd8448eb211c80319c"
    with FakeCluster().running() as cluster:
        running_pod = pod("web-a")
        running_pod["metadata"]["labels"] = {"app": "shop"}
        cluster.create("pods", running_pod)
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": cluster.host}}],
                    "users": [{"name": "me", "user": {}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
                    "current-context": "fake",
                }
            )
        )
        env = {
            "KUBECONFIG": str(kubeconfig),
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{otlp_receiver.endpoint}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            # No sampler settings: the example's defaults must show the reconcile on the first run.
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces", "kopf_operator.py"],
            cwd=EXAMPLES,
            env={**{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "K8S_OTEL_"))}, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while not any("watch=true" in r.query for r in cluster.seen("GET", "/kopfexamples")):
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the operator never started watching"
                time.sleep(0.05)
            cluster.create(
                "kopfexamples",
                {
                    "metadata": {
                        "name": "shop",
                        "namespace": "default",
                        "annotations": {
                            "k8s-otel.io/traceparent": f"00-{annotation_trace}-b7ad6b7169203331-01"
                        },
                    },
                    "spec": {"size": 1},
                },
            )
            while cluster.field("kopfexamples", "default", "shop", "status", "ready") != "1/1":
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the operator never reconciled"
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)  # kopf stops gracefully; the exit flushes the spans
            try:
                assert process.wait(timeout=20) == 0
            finally:
                process.kill()

    spans = otlp_receiver.spans()
    [handler] = [s for s in spans if s.name == "kopf.on.create kopfexamples.kopf.dev"]
    assert handler.scope == "k8s_otel.instrumentation.kopf"
    assert handler.resource["service.name"] == "kopfexample-operator"
    assert {
        k: handler.attributes[k] for k in ("name", "k8s.namespace.name", "kopf.handler.id", "kopf.outcome")
    } == {
        "name": "shop",
        "k8s.namespace.name": "default",
        "kopf.handler.id": "reconcile",
        "kopf.outcome": "success",
    }
    assert handler.parent_span_id == "" and [link[0] for link in handler.links] == [annotation_trace]
    # No start-up noise: kopf's scans and watches outside a handler start no trace of their own.
    assert {s.trace_id for s in spans} == {handler.trace_id}, sorted({s.name for s in spans})
    children = {
        s.name for s in spans if s.trace_id == handler.trace_id and s.parent_span_id == handler.span_id
    }
    assert {
        "GET /api/v1/namespaces/{:namespace}/pods",
        "PATCH /apis/kopf.dev/v1/namespaces/{:namespace}/kopfexamples/{:name}/status",
    } <= children


# --- deployable manifests ---------------------------------------------------------------------------

# The Kubernetes versions the docs claim (README "Supported"): the oldest and the newest.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
# Documents that are not objects of Kubernetes' own API, and what checks them instead.
NOT_BUILT_IN = {
    ("cert-manager.io/v1", "Issuer"): "cert-manager's CRDs",
    ("cert-manager.io/v1", "Certificate"): "cert-manager's CRDs",
    ("kind.x-k8s.io/v1alpha4", "Cluster"): "test_the_kind_cluster_loads_the_tracing_configuration",
    ("kopf.dev/v1", "KopfExample"): "test_custom_resources_match_their_crd",
    ("apiserver.config.k8s.io/v1", "TracingConfiguration"): "test_tracing_configuration_files_validate",
    ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"): "test_tracing_configuration_files_validate",
    (
        "opentelemetry.io/v1alpha1",
        "Instrumentation",
    ): "test_the_operator_instrumentation_cr_exports_over_http_protobuf",
}


def all_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, document)
        for path in sorted(MANIFESTS.glob("*.yaml"))
        if path.name != "otel-collector.yaml"  # the collector's own configuration, not a manifest
        for document in documents(path.name)
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_matches_the_kubernetes_schemas(version: str) -> None:
    import kubernetes_validate

    checked = 0
    for name, document in all_documents():
        key = (document.get("apiVersion"), document.get("kind"))
        if key in NOT_BUILT_IN:
            continue
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name} {key}: {error.message} at {list(error.path)}")
        checked += 1
    assert checked >= 15


def test_strict_schema_validation_catches_a_misspelt_field() -> None:
    import kubernetes_validate

    [deployment] = [d for d in documents("webhook-deployment.yaml") if d["kind"] == "Deployment"]
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_every_document_without_a_schema_is_known() -> None:
    """Nothing escapes the schema check by being unknown: each such document is listed, with its check."""
    import kubernetes_validate

    for _name, document in all_documents():
        key = (document.get("apiVersion"), document.get("kind"))
        if key in NOT_BUILT_IN:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(document, KUBERNETES_VERSIONS[-1], strict=True)


def test_custom_resources_match_their_crd() -> None:
    import jsonschema

    crd, example = documents("kopfexample-crd.yaml")
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == example["apiVersion"].split("/")[1]]
    jsonschema.validate(example, version["schema"]["openAPIV3Schema"])


def test_the_collector_deployment_runs_the_collector_config() -> None:
    config_map, deployment, service = documents("otel-collector-deployment.yaml")
    assert yaml.safe_load(config_map["data"]["config.yaml"]) == documents("otel-collector.yaml")[0]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["--config=/conf/config.yaml"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "otel-collector"
    assert {p["port"] for p in service["spec"]["ports"]} == {4317, 4318}
    rbac = documents("rbac.yaml")
    [binding] = [d for d in rbac if d["kind"] == "ClusterRoleBinding"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "otel-collector", "namespace": "observability"}
    ]


def test_the_kind_cluster_loads_the_tracing_configuration() -> None:
    [cluster] = documents("kind-cluster.yaml")
    [node] = cluster["nodes"]
    [mount] = node["extraMounts"]
    assert mount["hostPath"] == "@MANIFESTS@/tracing-apiserver-kind.yaml"
    assert (MANIFESTS / "tracing-apiserver-kind.yaml").is_file()
    [patch] = [yaml.safe_load(p) for p in node["kubeadmConfigPatches"]]
    assert patch["kind"] == "ClusterConfiguration" and patch["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    [flag] = patch["apiServer"]["extraArgs"]
    assert flag == {"name": "tracing-config-file", "value": mount["containerPath"]}
    [volume] = patch["apiServer"]["extraVolumes"]
    assert (
        mount["containerPath"].startswith(volume["hostPath"] + "/")
        and volume["mountPath"] == volume["hostPath"]
    )
    # kube-apiserver cannot resolve cluster DNS: the file names the collector Service's fixed IP.
    config = load_tracing_configuration(MANIFESTS / "tracing-apiserver-kind.yaml")
    [_, _, service] = documents("otel-collector-deployment.yaml")
    assert config.endpoint == f"{service['spec']['clusterIP']}:4317"
    assert config.sampling_rate_per_million == 1_000_000


def test_the_apiserver_flags_mount_what_they_name() -> None:
    [pod] = documents("apiserver-tracing-flags.yaml")
    [container] = pod["spec"]["containers"]
    [flag] = [a for a in container["command"] if a.startswith("--tracing-config-file=")]
    [mount] = container["volumeMounts"]
    assert flag.split("=", 1)[1].startswith(mount["mountPath"] + "/")


@pytest.mark.parametrize(
    ("manifest", "configuration", "service", "app"),
    [
        ("webhook-deployment.yaml", "validating-webhook.yaml", "replicas-webhook", "flask_webhook"),
        ("mutating-webhook.yaml", "mutating-webhook.yaml", "labels-webhook", "mutating_webhook"),
    ],
)
def test_each_webhook_is_wired_end_to_end(manifest: str, configuration: str, service: str, app: str) -> None:
    objects = {(d["kind"], d["metadata"]["name"]): d for d in documents(manifest)}
    deployment, svc = objects[("Deployment", service)], objects[("Service", service)]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["serviceAccountName"] == service
    assert {d["metadata"]["name"] for d in documents("rbac.yaml") if d["kind"] == "ServiceAccount"} >= {
        service
    }
    assert container["args"][-1] == f"{app}:create_app()"
    assert (EXAMPLES / f"{app}.py").is_file()
    assert f"examples/{app}.py" in (EXAMPLES / "Dockerfile").read_text()
    assert container["image"] == "replicas-webhook:dev"
    # TLS: the Secret the Pod mounts is the one cert-manager (or make-certs.sh) writes, for the Service's name.
    [tls] = [v for v in pod["volumes"] if v["name"] == "tls"]
    certificates = {
        d["metadata"]["name"]: d for d in documents("certificates.yaml") if d["kind"] == "Certificate"
    }
    assert certificates[service]["spec"]["secretName"] == tls["secret"]["secretName"] == f"{service}-tls"
    assert certificates[service]["spec"]["dnsNames"] == [f"{service}.webhooks.svc"]
    assert "for service in replicas-webhook labels-webhook" in (MANIFESTS / "make-certs.sh").read_text()
    [webhook_configuration] = [
        d for d in documents(configuration) if d["kind"].endswith("WebhookConfiguration")
    ]
    assert (
        webhook_configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        == f"webhooks/{service}"
    )
    [webhook] = webhook_configuration["webhooks"]
    assert webhook["clientConfig"]["service"] == {
        "namespace": "webhooks",
        "name": service,
        "path": webhook["clientConfig"]["service"]["path"],
    }
    assert (
        f'@app.post("{webhook["clientConfig"]["service"]["path"]}")' in (EXAMPLES / f"{app}.py").read_text()
    )
    assert svc["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # The webhook never gates the namespaces it, and the collector, must start in.
    [expression] = webhook["namespaceSelector"]["matchExpressions"]
    assert {"webhooks", "observability", "kube-system"} <= set(expression["values"])


def test_the_dockerfile_copies_what_exists() -> None:
    root = EXAMPLES.parent
    for line in (EXAMPLES / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (root / source).exists(), source


def test_make_certs_writes_a_chain_kube_apiserver_accepts(tmp_path: Path) -> None:
    script = MANIFESTS / "make-certs.sh"
    subprocess.run(["sh", "-n", str(script)], check=True, timeout=30)
    subprocess.run(
        ["sh", str(script), str(tmp_path)],
        check=True,
        timeout=60,
        env={**os.environ, "K8S_OTEL_CERTS_ONLY": "1"},
        capture_output=True,
    )
    for service in ("replicas-webhook", "labels-webhook"):
        crt = tmp_path / f"{service}.crt"
        verify = subprocess.run(
            ["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), str(crt)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        text = subprocess.run(
            ["openssl", "x509", "-in", str(crt), "-noout", "-text"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert f"DNS:{service}.webhooks.svc" in text  # Go checks the SAN, never the CN


def test_the_mutating_example_patches_and_joins_the_apiserver_trace(otlp_receiver: OTLPReceiver) -> None:
    import base64

    port = free_port()
    env = {"PORT": str(port), "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{otlp_receiver.endpoint}"}
    uid = "705ab4f5-6393-11e8-b7cc-42010a800003"
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "web",
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "u"},
            "object": {"metadata": {"name": "web", "labels": {"app": "web"}}},
        },
    }
    with running([sys.executable, "mutating_webhook.py"], port, env):
        trace_id, answer = admission_call(port, review, "/mutate")
    response = answer["response"]
    assert (response["uid"], response["allowed"], response["patchType"]) == (uid, True, "JSONPatch")
    assert json.loads(base64.b64decode(response["patch"])) == [
        {"op": "add", "path": "/metadata/labels/team", "value": "unassigned"}
    ]
    [span] = otlp_receiver.wait_for_spans(1)
    assert (span.trace_id, span.parent_span_id, span.name) == (trace_id, "00f067aa0ba902b7", "POST /mutate")
    assert span.resource["service.name"] == "labels-webhook"
    assert span.attributes["admission.webhook.type"] == "mutating"
    assert span.attributes["response.patchType"] == "JSONPatch"
    assert span.attributes["response.patch.operations"] == 1
    assert "admission.problems" not in span.attributes
