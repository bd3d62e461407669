"""Running an app under ``opentelemetry-instrument`` in a subprocess, against the real OTLP receiver.

The receiver class is imported here only, so that moving it is a one-line change.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

from k8s_otel.cli._receiver import OTLPReceiver, ReceivedSpan

__all__ = ["OTLPReceiver", "ReceivedSpan", "distro_env", "instrumented", "read_report", "stop"]

TESTS = Path(__file__).parent
INSTRUMENT = str(Path(sys.executable).parent / "opentelemetry-instrument")


def distro_env(receiver: OTLPReceiver, **extra: str) -> dict[str, str]:
    """The environment of a pod using the k8s distro, exporting to ``receiver``, sampling everything."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OTEL_", "K8S_OTEL_")) and name not in {"KUBERNETES_SERVICE_HOST", "POD_NAME"}
    }
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
            "OTEL_PYTHON_DISTRO": "k8s",
            "OTEL_PYTHON_CONFIGURATOR": "k8s",
            "OTEL_TRACES_SAMPLER": "k8s_per_million",
            "OTEL_TRACES_SAMPLER_ARG": "1000000",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{receiver.endpoint}",
            "OTEL_BSP_SCHEDULE_DELAY": "60000",  # nothing leaves before SIGTERM: the flush delivers it
            "OTEL_SERVICE_NAME": "zero-code-test",
        }
    )
    env.update(extra)
    return env


@contextmanager
def instrumented(module: str, env: Mapping[str, str], *args: str) -> Iterator[subprocess.Popen[str]]:
    """``opentelemetry-instrument python -m module args``; killed at the end if still running."""
    process = subprocess.Popen(
        [INSTRUMENT, sys.executable, "-m", module, *args],
        env=dict(env),
        cwd=str(TESTS),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def read_report(process: subprocess.Popen[str]) -> dict[str, Any]:
    """The first JSON line the app prints (it prints it once it is ready)."""
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=10)
        stderr = process.stderr.read() if process.stderr is not None else ""
        raise AssertionError(f"the app exited ({process.returncode}) before reporting:\n{stderr}")
    result: dict[str, Any] = json.loads(line)
    if "port" in result:
        _wait_for_port(int(result["port"]))
    return result


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    """The app prints its port before its server loop starts listening (uvicorn with a given socket)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def stop(process: subprocess.Popen[str], timeout: float = 15.0) -> tuple[int, str]:
    """SIGTERM, as the kubelet sends it; returns the exit code and stderr."""
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=timeout)
    return process.returncode, stderr


def server_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [span for span in spans if span.kind == "SERVER"]


def one(items: list[Any], what: Optional[str] = None) -> Any:
    assert len(items) == 1, f"expected exactly one {what or 'item'}, got {len(items)}: {items}"
    return items[0]
