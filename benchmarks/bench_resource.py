"""Resource detection cost: the Kubernetes detector on a fixture pod against the stock detectors, same run."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from opentelemetry.resource.detector.containerid import ContainerResourceDetector
from opentelemetry.sdk.resources import OTELResourceDetector

from k8s_otel._resource import KubernetesResourceDetector

POD = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "pods" / "containerd"
ENVIRON = {
    "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    "HOSTNAME": "replicas-webhook-7d9f8b6c5d-x2x4z",
    "POD_IP": "10.244.1.7",
}


def _ours() -> None:
    KubernetesResourceDetector(environ=ENVIRON, root=POD, downward_api_dir=POD / "etc" / "podinfo").detect()


def _stock() -> None:
    # The stock pair a user would combine by hand: the env detector and contrib's container-id detector.
    OTELResourceDetector().detect()
    ContainerResourceDetector().detect()


IMPLEMENTATIONS: dict[str, Callable[[], None]] = {"k8s_otel": _ours, "stock": _stock}


@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
def test_detect(benchmark: Any, implementation: str) -> None:
    benchmark.group = "resource detection, one call"
    benchmark(IMPLEMENTATIONS[implementation])
