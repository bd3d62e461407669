"""Packaging and small defects: --version, missing extras, doctor against what configure() does, LICENSE."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import k8s_otel
import subprocess_scripts
from k8s_otel.cli._receiver import OTLPReceiver

ROOT = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "K8S_OTEL_"))}


def run_without(
    blocked: str, scenario: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a scenario of subprocess_scripts.without with the ``blocked`` packages uninstalled."""
    return subprocess_scripts.run("without", blocked, scenario, *args, env={**ENV, **(env or {})})


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "k8s_otel", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, f"k8s-otel {k8s_otel.__version__}\n")


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("k8s_otel.webhook._flask", "flask", "flask"),
        ("k8s_otel.instrumentation._kopf", "opentelemetry.instrumentation", "kopf"),
        ("k8s_otel.instrumentation._kubernetes", "opentelemetry.instrumentation", "kubernetes"),
    ],
)
def test_a_missing_extra_is_named(module: str, blocked: str, extra: str) -> None:
    result = run_without(blocked, "import_error", module)
    name, message = result.stdout.splitlines()
    assert name.startswith("True " + blocked)  # a ModuleNotFoundError and a K8sOtelError
    assert f"k8s-otel[{extra}]" in message  # names the extra to install


def test_the_fastapi_adapter_imports_without_fastapi() -> None:
    # It only needs ASGI: any Starlette or FastAPI app the user has brings its own framework.
    result = run_without("fastapi,starlette", "import_ok", "k8s_otel.webhook._fastapi")
    assert result.stdout == "ok\n", result.stderr


def test_doctor_is_not_ok_for_http_protobuf_without_the_http_extra() -> None:
    with OTLPReceiver(http_port=0) as receiver:  # something does listen on the port
        result = run_without(
            "opentelemetry.exporter.otlp.proto.http",
            "cli",
            "doctor",
            env={
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.http_port}",
            },
        )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    [collector] = [line for line in lines if line.startswith("collector:")]
    assert "not checked" in collector  # no connection check for an exporter that cannot be built
    assert any(
        line.startswith("error:") and "http/protobuf" in line and "k8s-otel[http]" in line for line in lines
    )
    assert lines[-1].startswith("broken")


def test_doctor_is_ok_for_http_protobuf_with_the_extra() -> None:
    with OTLPReceiver(http_port=0) as receiver:
        result = subprocess.run(
            [sys.executable, "-m", "k8s_otel", "doctor"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={
                **ENV,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.http_port}",
            },
        )
    assert result.returncode == 0, result.stdout
    [collector] = [line for line in result.stdout.splitlines() if line.startswith("collector:")]
    assert f"127.0.0.1:{receiver.http_port}" in collector and "not checked" not in collector


def test_license_is_the_apache_2_text_pyproject_names() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n                           Version 2.0, January 2004")
    assert "END OF TERMS AND CONDITIONS" in text
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()
