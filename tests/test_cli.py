"""The k8s-otel command, run for real in a subprocess."""

from __future__ import annotations

import re
import subprocess
import sys


def k8s_otel(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k8s_otel", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_demo_prints_what_the_receiver_got() -> None:
    result = k8s_otel("demo", "--requests", "5")
    assert result.returncode == 0, result.stderr
    trace_ids = re.findall(r"^trace ([0-9a-f]{32})$", result.stdout, re.MULTILINE)
    assert len(trace_ids) == 5 == len(set(trace_ids))
    assert result.stdout.count("Call validating webhook [INTERNAL]") == 5
    assert "requests: 5, sampled: 5, traces received: 5, spans exported: 5" in result.stdout


def test_demo_samples_per_million() -> None:
    result = k8s_otel("demo", "--requests", "400", "--sampling-rate-per-million", "0")
    assert result.returncode == 0, result.stderr
    assert "root:AlwaysOffSampler" in result.stdout
    assert "requests: 400, sampled: 0, traces received: 0, spans exported: 0" in result.stdout
