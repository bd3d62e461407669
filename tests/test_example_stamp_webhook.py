"""The stamping webhook's manifests and TLS script: the settings the issue asks for, and a working certificate."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8s_otel.webhook._stamp import DEFAULT_PATH, make_https_server, parser

MANIFESTS = Path(__file__).resolve().parents[1] / "examples" / "manifests"


def documents() -> dict[str, dict[str, Any]]:
    loaded = [d for d in yaml.safe_load_all((MANIFESTS / "stamp-webhook.yaml").read_text()) if d]
    return {d["kind"]: d for d in loaded}


def test_the_webhook_configuration_never_blocks_and_keeps_out_the_control_plane() -> None:
    manifests = documents()
    [webhook] = manifests["MutatingWebhookConfiguration"]["webhooks"]
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["sideEffects"] == "None"
    assert webhook["reinvocationPolicy"] == "Never"
    assert webhook["timeoutSeconds"] <= 3
    [expression] = webhook["namespaceSelector"]["matchExpressions"]
    namespace = manifests["Namespace"]["metadata"]["name"]
    assert expression["key"] == "kubernetes.io/metadata.name" and expression["operator"] == "NotIn"
    assert set(expression["values"]) == {"kube-system", namespace}
    assert webhook["clientConfig"]["service"]["path"] == DEFAULT_PATH
    assert webhook["clientConfig"]["service"]["name"] == manifests["Service"]["metadata"]["name"]
    groups = {group for rule in webhook["rules"] for group in rule["apiGroups"]}
    assert "coordination.k8s.io" not in groups and "events.k8s.io" not in groups
    assert all(set(rule["operations"]) <= {"CREATE", "UPDATE"} for rule in webhook["rules"])
    assert all(
        "events" not in rule["resources"] and "*" not in rule["resources"] for rule in webhook["rules"]
    )


def test_the_deployment_runs_the_stamp_command_with_the_certificate_secret() -> None:
    manifests = documents()
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    assert args[:2] == ["k8s-otel", "stamp"]
    options = parser().parse_args(args[2:])
    assert (options.port, options.cert, options.key) == (8443, "/tls/tls.crt", "/tls/tls.key")
    [tls] = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert tls["secret"]["secretName"] == manifests["Certificate"]["spec"]["secretName"]
    assert manifests["Service"]["spec"]["ports"][0]["targetPort"] == "https"
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    dns = manifests["Certificate"]["spec"]["dnsNames"]
    assert "k8s-otel-stamp.k8s-otel-stamp.svc" in dns


FAKE_KUBECTL = """#!/bin/sh
# Records what the TLS script asks of kubectl; keeps the certificate it would store in the Secret.
echo "$@" >> "$OUT/calls"
for arg in "$@"; do
  case "$arg" in
    --cert=*) cp "${arg#--cert=}" "$OUT/tls.crt" ;;
    --key=*) cp "${arg#--key=}" "$OUT/tls.key" ;;
  esac
done
if [ "$1" = "patch" ]; then
  for arg in "$@"; do last="$arg"; done
  printf '%s' "$last" > "$OUT/patch.json"
fi
cat > /dev/null 2>&1 || true
"""


def test_the_openssl_script_makes_a_certificate_kube_apiserver_would_accept(tmp_path: Path) -> None:
    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir()
    out.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OUT": str(out)}
    subprocess.run(
        ["sh", str(MANIFESTS / "stamp-webhook-tls.sh")],
        check=True,
        env=env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    [patch] = json.loads((out / "patch.json").read_text())
    assert patch["path"] == "/webhooks/0/clientConfig/caBundle"
    ca = tmp_path / "ca.crt"
    ca.write_bytes(base64.b64decode(patch["value"]))
    # Serve with the Secret's certificate; connect as kube-apiserver does: the CA bundle, the Service name.
    server = make_https_server("127.0.0.1", 0, str(out / "tls.crt"), str(out / "tls.key"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        context = ssl.create_default_context(cafile=str(ca))
        raw = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10)
        with context.wrap_socket(raw, server_hostname="k8s-otel-stamp.k8s-otel-stamp.svc") as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: stamp\r\nContent-Length: 0\r\n\r\n")
            assert tls.recv(100).startswith(b"HTTP/1.1 200")
        raw = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10)
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                context.wrap_socket(raw, server_hostname="elsewhere.example.com")
        finally:
            raw.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
