"""Per-call overhead of the kubernetes client instrumentation against the stock urllib3 instrumentation.

Three variants in one run, on the same read_namespaced_pod call to a fake apiserver on 127.0.0.1:
bare, the stock URLLib3Instrumentor only, and ours only; the same TracerProvider (sampling on,
spans dropped), so ratios.py reports (ours - bare) / (stock - bare).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from k8s_otel.instrumentation._kubernetes import KubernetesClientInstrumentor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_cluster import FakeCluster

CALLS = 50
PROVIDER = TracerProvider(sampler=ALWAYS_ON)
PROVIDER.add_span_processor(SpanProcessor())


@pytest.fixture(scope="module")
def api() -> Iterator[kubernetes.client.CoreV1Api]:
    with FakeCluster.with_pods("web-0").running() as fake:
        configuration = kubernetes.client.Configuration(host=fake.host)
        yield kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))


@pytest.mark.parametrize("implementation", ["bare", "stock", "k8s_otel"])
def test_read_namespaced_pod(benchmark: Any, api: kubernetes.client.CoreV1Api, implementation: str) -> None:
    benchmark.group = f"kubernetes client, {CALLS} read_namespaced_pod calls"
    instrumentor: Any = {"stock": URLLib3Instrumentor, "k8s_otel": KubernetesClientInstrumentor}.get(
        implementation
    )
    active = instrumentor() if instrumentor else None
    if active is not None:
        active.instrument(tracer_provider=PROVIDER)
    try:
        benchmark(lambda: [api.read_namespaced_pod("web-0", "default") for _ in range(CALLS)])
    finally:
        if active is not None:
            active.uninstrument()
