"""README.md and docs/: the commands CI runs, the quickstart, the demo picture, and the links hold."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from k8s_otel.cli.receiver import OTLPReceiver

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "K8S_OTEL_"))}


def block_after(heading: str, language: str) -> str:
    section = README[README.index(heading) :]
    match = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert match, heading
    return match.group(1)


def test_the_readme_opens_with_the_two_commands_ci_runs() -> None:
    assert README.startswith(
        "# k8s-otel\n\n```sh\npip install . && k8s-otel demo\n```\n\n```sh\npip install -e '.[test]' && pytest -q\n```\n"
    )


def test_the_readme_says_the_package_is_not_on_pypi() -> None:
    assert "**not published on PyPI yet**: `pip install k8s-otel` fails" in README
    assert "pip install k8s-otel " not in README.replace("pip install k8s-otel` fails", "")


def test_the_flask_quickstart_joins_the_caller_s_trace() -> None:
    quickstart = block_after("## Quickstart: an existing Flask webhook", "python")
    assert len(quickstart.strip().splitlines()) == 5
    program = (
        textwrap.dedent(
            """
            import flask, json, sys
            app = flask.Flask("existing")

            @app.post("/validate")
            def validate():
                uid = flask.request.get_json()["request"]["uid"]
                return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                        "response": {"uid": uid, "allowed": True}}
            """
        )
        + quickstart
        + textwrap.dedent(
            """
            review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                      "request": {"uid": "u-1", "operation": "CREATE",
                                  "kind": {"group": "", "version": "v1", "kind": "Pod"},
                                  "resource": {"group": "", "version": "v1", "resource": "pods"}}}
            answer = app.test_client().post(
                "/validate", json=review,
                headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
            assert answer.status_code == 200, answer.data
            answer.close()  # the server span ends when the WSGI response is closed
            import k8s_otel
            k8s_otel.configure(service_name="my-webhook").shutdown(10)
            """
        )
    )
    with OTLPReceiver() as receiver:
        result = subprocess.run(
            [sys.executable, "-c", program],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{receiver.endpoint}"},
        )
        assert result.returncode == 0, result.stderr
        [span] = receiver.wait_for_spans(1)
    assert (span.trace_id, span.parent_span_id) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert span.name == "POST /validate" and span.kind == "SERVER"
    assert span.resource["service.name"] == "my-webhook"
    assert span.attributes["UID"] == "u-1"


def test_the_readme_picture_is_what_demo_draws() -> None:
    picture = block_after("## What the demo shows", "").splitlines()
    result = subprocess.run(
        [sys.executable, "-m", "k8s_otel", "demo", "--requests", "4", "--width", "100"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**ENV, "PYTHONIOENCODING": "utf-8"},
    )
    drawn = result.stdout.splitlines()

    def shape(lines: list[str]) -> list[str]:
        """Rows without times, ids and bars: labels, services and kinds."""
        return [line.split("│")[0].rstrip() for line in lines if "│" in line][:5]

    assert shape(picture) == shape(drawn[drawn.index(next(line for line in drawn if "(allowed)" in line)) :])
    summary = picture[picture.index(next(line for line in picture if line.startswith("requests:"))) :]
    assert summary == drawn[drawn.index(summary[0]) : drawn.index(summary[0]) + len(summary)]
    assert max(len(line) for line in picture) <= 100 or all(
        "│" not in line for line in picture if len(line) > 100
    )


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_relative_link_and_named_example_file_exists() -> None:
    for path in _markdown_files():
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"{path.name}: {target}"
        for named in re.findall(r"(examples/[\w./-]+\.(?:py|yaml|sh)|examples/Dockerfile)", text):
            assert (ROOT / named).exists(), f"{path.name}: {named}"


def test_the_walkthrough_applies_every_manifest_it_names() -> None:
    walkthrough = (ROOT / "docs" / "walkthrough-kind.md").read_text(encoding="utf-8")
    applied = set(re.findall(r"-f (examples/manifests/[\w.-]+\.yaml)", walkthrough))
    manifests = {
        f"examples/manifests/{p.name}"
        for p in (ROOT / "examples" / "manifests").glob("*.yaml")
        if p.name
        not in {
            "otel-collector.yaml",  # held in the collector's ConfigMap
            "kind-cluster.yaml",  # kind's own configuration, used in step 1
            "tracing-apiserver.yaml",  # the production-rate file, shown elsewhere
            "tracing-apiserver-kind.yaml",  # mounted by kind-cluster.yaml
            "kubelet-config.yaml",  # the kubelet's tracing, not part of the walkthrough
            "kopfexample-crd.yaml",  # the kopf example's
            "apiserver-tracing-flags.yaml",  # outside kind
            "instrumentation.yaml",  # needs the OpenTelemetry Operator: docs/zero-code.md
        }
    }
    assert manifests <= applied, manifests - applied
