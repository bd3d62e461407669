"""The k8s-otel command, run for real in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from k8s_otel._resource import DEFAULT_ENV_NAMES, DOWNWARD_API_FIELDS
from k8s_otel.cli._doctor import _missing_downward_env
from k8s_otel.cli._receiver import OTLPReceiver

TOKEN = "s3cr3t-t0ken"
VALID = "apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\nendpoint: localhost:4317\nsamplingRatePerMillion: 100\n"
INVALID = (
    "apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\n"
    "endpoint: http://localhost:4317\nsamplingRatePerMillion: -5\n"
)


def k8s_otel(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k8s_otel", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout


# --- validate ----------------------------------------------------------------------------------


def test_validate_good_files(tmp_path: Path) -> None:
    apiserver = tmp_path / "tracing.yaml"
    apiserver.write_text(VALID)
    kubelet = tmp_path / "kubelet.yaml"
    kubelet.write_text(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ntracing:\n  samplingRatePerMillion: 7\n"
    )
    result = k8s_otel("validate", str(apiserver), str(kubelet))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{apiserver}: valid (endpoint: localhost:4317, samplingRatePerMillion: 100)",
        f"{kubelet}: valid (endpoint: unset, localhost:4317, samplingRatePerMillion: 7)",
    ]


def test_validate_bad_file_prints_every_error_in_kubernetes_wording(tmp_path: Path) -> None:
    path = tmp_path / "tracing.yaml"
    path.write_text(INVALID)
    result = k8s_otel("validate", str(path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{path}: samplingRatePerMillion: Invalid value: -5: sampling rate must be positive",
        f'{path}: endpoint: Invalid value: "http://localhost:4317": unsupported scheme: http.  Options are none, '
        "dns, unix, or unix-abstract.  See https://github.com/grpc/grpc/blob/master/doc/naming.md",
    ]
    no_traceback(result)


def test_validate_undecodable_and_unreadable(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: apps/v1\nkind: DaemonSet\n")
    result = k8s_otel("validate", str(bad))
    assert result.returncode == 1
    assert result.stdout.startswith(
        f'{bad}: unable to decode tracing configuration data: no kind "DaemonSet"'
    )
    missing = tmp_path / "missing.yaml"
    result = k8s_otel("validate", str(bad), str(missing))
    assert result.returncode == 2  # one cannot be read: that wins
    assert f'{missing}: unable to read tracing configuration from "{missing}"' in result.stdout
    no_traceback(result)


def test_validate_json_output(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(VALID)
    bad.write_text(INVALID)
    result = k8s_otel("validate", "--json", str(good), str(bad))
    assert result.returncode == 1
    [first, second] = json.loads(result.stdout)
    assert first == {
        "file": str(good),
        "valid": True,
        "endpoint": "localhost:4317",
        "samplingRatePerMillion": 100,
    }
    assert (second["valid"], second["reason"], len(second["errors"])) == (False, "validate", 2)


def test_validate_needs_a_file() -> None:
    result = k8s_otel("validate")
    assert result.returncode == 2
    assert "usage:" in result.stderr
    no_traceback(result)


# --- doctor ------------------------------------------------------------------------------------


def test_doctor_against_a_live_endpoint(otlp_receiver: OTLPReceiver, tmp_path: Path) -> None:
    path = tmp_path / "tracing.yaml"
    path.write_text(
        f"apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\nendpoint: {otlp_receiver.endpoint}\n"
    )
    result = k8s_otel(
        "doctor",
        "--config-file",
        str(path),
        env={"OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {TOKEN}", "OTEL_SERVICE_NAME": "svc"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(
        rf"endpoint\s+{re.escape(otlp_receiver.endpoint)}\s+file \({re.escape(str(path))}\)", result.stdout
    )
    assert re.search(
        r"headers\s+authorization \(values hidden\)\s+env \(OTEL_EXPORTER_OTLP_HEADERS\)", result.stdout
    )
    lines = result.stdout.splitlines()
    [collector] = [line for line in lines if line.startswith("collector:")]
    assert otlp_receiver.endpoint in collector
    [kubernetes] = [line for line in lines if line.startswith("kubernetes resource:")]
    assert "none" in kubernetes
    assert result.stdout.rstrip().endswith("ok")
    assert TOKEN not in result.stdout + result.stderr


def test_doctor_against_a_dead_endpoint() -> None:
    receiver = OTLPReceiver().start()
    endpoint = receiver.endpoint
    receiver.stop()
    result = k8s_otel("doctor", "--endpoint", endpoint, "--timeout", "1", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["collector"]["reachable"] is False
    assert report["settings"]["endpoint"] == {"value": endpoint, "source": "argument", "origin": ""}
    assert report["kubernetes_resource"] == {}
    assert any(f["message"].startswith("collector unreachable") for f in report["findings"])


def test_doctor_warns_about_common_mistakes(otlp_receiver: OTLPReceiver, tmp_path: Path) -> None:
    bad = tmp_path / "tracing.yaml"
    bad.write_text(INVALID)
    result = k8s_otel(
        "doctor",
        "--endpoint",
        otlp_receiver.endpoint,
        env={
            "K8S_OTEL_TRACING_CONFIG": str(bad),
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.0001",
            "OTEL_EXPORTER_OTLP_CERTIFICATE": str(tmp_path / "nope.pem"),
            "KUBERNETES_SERVICE_HOST": "10.96.0.1",
            "POD_NAME": "web-0",
        },
    )
    assert result.returncode == 1
    text = result.stdout
    assert "unsupported scheme: http" in text and "sampling rate must be positive" in text
    # One fix for the sampler variable, given once, with the stock ratio converted to per million.
    assert text.count("OTEL_TRACES_SAMPLER=parentbased_traceidratio") == 1
    assert "k8s_per_million" in text and "OTEL_TRACES_SAMPLER_ARG=100" in text
    assert any("OTEL_EXPORTER_OTLP_CERTIFICATE" in line and "nope.pem" in line for line in text.splitlines())
    [warning] = [line for line in text.splitlines() if "downward" in line.lower()]
    for name in ("POD_NAMESPACE", "POD_UID", "NODE_NAME", "POD_IP"):
        assert re.search(rf"\b{name}\b", warning), name  # each missing variable is named
    assert not re.search(r"\bPOD_NAME\b", warning)  # given, so not asked for
    assert "k8s.pod.name=web-0" in text.split("kubernetes resource:")[1].splitlines()[0]
    assert text.rstrip().endswith("broken: see the errors above")
    no_traceback(result)


def test_doctor_sampler_arg_that_is_not_an_integer(otlp_receiver: OTLPReceiver) -> None:
    result = k8s_otel(
        "doctor",
        "--endpoint",
        otlp_receiver.endpoint,
        env={"OTEL_TRACES_SAMPLER": "k8s_per_million", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
    )
    assert result.returncode == 1
    assert "error: OTEL_TRACES_SAMPLER_ARG: samplingRatePerMillion: Invalid value: '1.5'" in result.stdout


def test_doctor_accepts_every_name_resource_detection_reads(otlp_receiver: OTLPReceiver) -> None:
    # K8S_NAMESPACE and the K8S_* names are read by detection: doctor must not ask for them again.
    given = {
        "POD_NAME": "web-0",
        "K8S_NAMESPACE": "team-a",
        "K8S_POD_UID": "0" * 8 + "-0000-0000-0000-" + "0" * 12,
    }
    result = k8s_otel(
        "doctor",
        "--endpoint",
        otlp_receiver.endpoint,
        env={
            "KUBERNETES_SERVICE_HOST": "10.96.0.1",
            "K8S_NODE_NAME": "node-1",
            "OTEL_POD_IP": "10.0.0.7",
            **given,
        },
    )
    assert result.returncode == 0, result.stdout
    assert "downward-API" not in result.stdout
    assert "k8s.namespace.name=team-a" in result.stdout


@pytest.mark.parametrize(
    "name",
    sorted({name for names in DEFAULT_ENV_NAMES.values() for name in names} | set(DOWNWARD_API_FIELDS)),
)
def test_doctor_and_detection_share_the_env_names(name: str) -> None:
    from k8s_otel._resource import KubernetesResourceDetector

    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", name: "10.0.0.7"}
    detected = dict(KubernetesResourceDetector(environ=environ).detect().attributes)
    [key] = [key for key, names in DEFAULT_ENV_NAMES.items() if name in names]
    assert key in detected  # what the name gives, detection reads ...
    assert not any(
        line.startswith(f"{key} ") for line in _missing_downward_env(detected)
    )  # ... and doctor accepts


def test_every_downward_api_field_is_read_by_detection() -> None:
    read = {name for names in DEFAULT_ENV_NAMES.values() for name in names}
    assert set(DOWNWARD_API_FIELDS) <= read
    assert len(_missing_downward_env({})) == len(DOWNWARD_API_FIELDS)


def test_every_command_has_help_with_examples() -> None:
    for command in ("demo", "doctor", "validate", "receive"):
        result = k8s_otel(command, "--help")
        assert result.returncode == 0
        assert "examples:" in result.stdout, command


@pytest.mark.parametrize("argv", [["demo", "--requests", "0"], ["demo", "--requests", "x"], ["nope"]])
def test_user_errors_never_print_a_traceback(argv: list[str]) -> None:
    result = k8s_otel(*argv)
    assert result.returncode == 2
    no_traceback(result)


# --- demo --------------------------------------------------------------------------------------

CHAIN = [
    ("POST /apis/apps/v1/namespaces/{:namespace}/deployments", "SERVER", "apiserver"),
    ("Call validating webhook", "INTERNAL", "apiserver"),
    ("HTTP POST", "CLIENT", "apiserver"),
    ("POST /validate", "SERVER", "demo-webhook"),
    ("policy check", "INTERNAL", "demo-webhook"),
]


def test_demo_trees_are_the_received_spans() -> None:
    result = k8s_otel("demo", "--requests", "8", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    spans = {s["span_id"]: s for s in report["spans"]}
    # 8 admission traces, and the asynchronous half's three (stamp, two linked reconciles): 10 spans
    assert report["summary"]["sampled"] == 8 == len(report["traces"]) - 3
    assert report["summary"]["spans_exported"] == len(spans) == 8 * 5 + 10
    seen: set[str] = set()

    def is_async(tree: dict) -> bool:  # type: ignore[type-arg]
        root = tree["roots"][0]
        return root["name"].startswith("reconcile") or root["children"][0]["name"] == "Call mutating webhook"

    async_traces = [tree for tree in report["traces"] if is_async(tree)]
    assert len(async_traces) == 3
    for tree in async_traces:
        stack = list(tree["roots"])
        while stack:
            node = stack.pop()
            seen.add(node["span_id"])
            stack.extend(node["children"])
    for tree in report["traces"]:
        if is_async(tree):
            continue
        [root] = tree["roots"]
        node, chain = root, []
        while True:
            received = spans[node["span_id"]]
            assert (received["trace_id"], received["parent_span_id"]) == (
                tree["trace_id"],
                node["parent_span_id"],
            )
            chain.append((node["name"], node["kind"], node["resource"]["service.name"]))
            seen.add(node["span_id"])
            if not node["children"]:
                break
            [child] = node["children"]
            assert child["parent_span_id"] == node["span_id"]
            node = child
        assert chain == CHAIN
        call, webhook = root["children"][0], root["children"][0]["children"][0]["children"][0]
        assert call["attributes"]["UID"] == webhook["attributes"]["UID"]  # the two sides join on UID
    assert seen == set(spans)
    assert report["summary"]["denied"] == 2  # every fourth Deployment asks for 12 replicas


def test_demo_shows_a_header_two_waterfalls_and_a_summary() -> None:
    result = k8s_otel("demo", "--requests", "4", env={"PYTHONIOENCODING": "utf-8"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "k8s-otel demo: 4 AdmissionReview requests (CREATE Deployment) to an example validating webhook "
        "wrapped by WSGIMiddleware, on 127.0.0.1."
    )
    assert lines[1].startswith('  simulated: kube-apiserver. Its spans, service "apiserver"')
    assert any(
        re.fullmatch(
            r"  spans went to: the demo's own OTLP/gRPC receiver on 127\.0\.0\.1:\d+ \(drawn below\)\.", line
        )
        for line in lines[:8]
    )
    headers = [line for line in lines if line.startswith("trace ")]
    assert [re.sub(r"[0-9a-f]{32}", "ID", h.split("  ")[0]) for h in headers] == [
        "trace ID (denied)",
        "trace ID (allowed)",
        "trace ID",  # the asynchronous half: the Deployment stamped on admission,
        "trace ID",  # and the reconcile linked to it, with the stamped ReplicaSet's admission
    ]
    assert "services: apiserver, demo-controller, k8s-otel-stamp" in headers[3]
    assert any(line.strip().startswith("↪ link to trace ") for line in lines)
    for header in headers[:2]:
        assert header.endswith("5 spans, " + header.split("5 spans, ")[1])
        assert "services: apiserver, demo-webhook" in header
    rows = [line for line in lines if "│" in line]
    assert [row.split("│")[0].split()[-1] for row in rows[:5]] == [
        "SERVER",
        "INTERNAL",
        "CLIENT",
        "SERVER",
        "INTERNAL",
    ]
    assert rows[3].lstrip().startswith("└ POST /validate") and " demo-webhook " in rows[3]
    assert lines[-3] == (
        "requests: 4 (3 allowed, 1 denied); sampler decisions: 4 (4 sampled, 0 not) at samplingRatePerMillion=1000000"
    )
    assert lines[-2] == (
        "webhook spans joined to their apiserver parent: 4 of 4; spans received: 30 in 7 traces; "
        "--verbose shows every attribute"
    )
    assert lines[-1].startswith("latency: mean ")
    assert max(len(line) for line in lines) <= 160
    assert "UID = " not in result.stdout  # attributes only with --verbose


def test_demo_verbose_shows_attributes_and_resources() -> None:
    result = k8s_otel(
        "demo", "--requests", "1", "--verbose", "--width", "120", env={"PYTHONIOENCODING": "utf-8"}
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^ +UID = [0-9a-f-]{36}$", result.stdout, re.MULTILINE)
    assert "\nresources:\n  apiserver: " in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 120


def test_demo_in_ascii_on_a_terminal_that_cannot_show_blocks() -> None:
    result = k8s_otel("demo", "--requests", "1", env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr
    assert "|###" in result.stdout or "|.##" in result.stdout or "#|" in result.stdout


def test_demo_json_summary_counts_the_joins() -> None:
    result = k8s_otel("demo", "--requests", "4", "--json")
    summary = json.loads(result.stdout)["summary"]
    assert (
        summary["allowed"],
        summary["denied"],
        summary["webhook_spans_joined"],
        summary["webhook_spans"],
    ) == (3, 1, 4, 4)
    assert summary["sampler_decisions"] == {"sampled": 4, "not_sampled": 0}


def test_demo_to_an_endpoint_where_nothing_listens_fails_in_one_line() -> None:
    receiver = OTLPReceiver().start()
    endpoint = receiver.endpoint
    receiver.stop()
    result = k8s_otel("demo", "--requests", "2", "--endpoint", endpoint, timeout=30)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"k8s-otel demo: cannot export to {endpoint}: no gRPC connection to {endpoint}: "
        "the connection failed (refused, or no such host)"
    ]


@pytest.mark.parametrize(("rate", "sampled"), [("0", 0), ("1000000", 30)])
def test_demo_rate_from_a_tracing_configuration(tmp_path: Path, rate: str, sampled: int) -> None:
    path = tmp_path / "tracing.yaml"
    path.write_text(
        f"apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\nsamplingRatePerMillion: {rate}\n"
    )
    result = k8s_otel("demo", "--requests", "30", "--config-file", str(path), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert (summary["sampled"], summary["spans_exported"], summary["samplingRatePerMillion"]) == (
        sampled,
        sampled * 5 + (10 if sampled else 0),  # the asynchronous half samples at the same rate
        int(rate),
    )


def test_demo_exports_to_a_collector(otlp_receiver: OTLPReceiver) -> None:
    result = k8s_otel("demo", "--requests", "3", "--endpoint", otlp_receiver.endpoint)
    assert result.returncode == 0, result.stderr
    assert otlp_receiver.endpoint in result.stdout  # says where the spans went
    assert "trace " not in result.stdout
    spans = otlp_receiver.wait_for_spans(25)  # and the asynchronous half's 10 spans in 3 traces
    assert len(spans) == 25 and len({s.trace_id for s in spans}) == 3 + 3


def test_demo_honours_otel_exporter_otlp_endpoint(otlp_receiver: OTLPReceiver) -> None:
    result = k8s_otel(
        "demo", "--requests", "2", env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{otlp_receiver.endpoint}"}
    )
    assert result.returncode == 0, result.stderr
    assert len(otlp_receiver.wait_for_spans(20)) == 20


def test_demo_bad_config_file_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "tracing.yaml"
    path.write_text("kind: Nope\n")
    result = k8s_otel("demo", "--config-file", str(path))
    assert result.returncode == 2
    assert "unable to decode tracing configuration data" in result.stderr
    no_traceback(result)


def test_demo_bad_rate_is_a_user_error() -> None:
    result = k8s_otel("demo", "--sampling-rate-per-million", "-5")
    assert result.returncode == 2
    assert "sampling rate must be positive" in result.stderr
    no_traceback(result)


def test_doctor_says_where_lost_spans_are_counted() -> None:
    result = k8s_otel("doctor", "--timeout", "0.2")
    [lost] = [line for line in result.stdout.splitlines() if "lost spans:" in line]
    assert "handle.statistics()" in lost  # points to where they are counted
