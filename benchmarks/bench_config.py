"""TracingConfiguration parse time on hostile files under the 1 MiB cap, and on a normal file.

Each hostile file took 20-47 s of CPU in PyYAML before the limits (issue 11). The stock
equivalent, ``yaml.safe_load`` on the same text, is measured on the normal file only: on the
hostile ones it runs for tens of seconds per round.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import yaml

from k8s_otel._config import TracingConfigurationError, parse_tracing_configuration

NORMAL = "apiVersion: apiserver.config.k8s.io/v1\nkind: TracingConfiguration\nendpoint: collector:4317\nsamplingRatePerMillion: 100\n"
HOSTILE = {
    "[ x100k": "[" * 100_000,
    "--- x200k": "---\n" * 200_000,
    "80k aliases": "a: &a [x]\nb: [" + ", ".join(["*a"] * 80_000) + "]\n",
    "1 MiB scalar": "endpoint: " + "x" * ((1 << 20) - 20),
    "deep block nesting": "a:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 1400)),
    "60k keys": "".join(f"k{i}: v\n" for i in range(60_000)),
    "1 MiB comment": "#" * ((1 << 20) - 1),
}


def _decide(text: str) -> None:
    with contextlib.suppress(TracingConfigurationError):
        parse_tracing_configuration(text)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_file_is_decided(benchmark: Any, name: str) -> None:
    benchmark.group = "hostile TracingConfiguration files (k8s_otel only)"
    benchmark.pedantic(_decide, args=(HOSTILE[name],), rounds=5, iterations=1)


@pytest.mark.parametrize("implementation", ["k8s_otel", "stock"])
def test_normal_file(benchmark: Any, implementation: str) -> None:
    benchmark.group = "a normal TracingConfiguration file"
    if implementation == "k8s_otel":
        benchmark(parse_tracing_configuration, NORMAL)
    else:
        benchmark(yaml.safe_load, NORMAL)
