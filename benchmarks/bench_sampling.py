"""should_sample: PerMillionSampler against the stock ParentBased(TraceIdRatioBased), same run."""

from __future__ import annotations

import random
from typing import Any, Callable

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from k8s_otel._sampling import PerMillionSampler

RATE = 100  # per million: kube-apiserver's recommended order of magnitude
IDS = [random.Random(7).getrandbits(128) for _ in range(1000)]
REMOTE_SAMPLED = trace.set_span_in_context(
    NonRecordingSpan(SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, True, TraceFlags(1)))
)

SAMPLERS: dict[str, Callable[[], Sampler]] = {
    "k8s_otel": lambda: PerMillionSampler(RATE),
    "stock": lambda: ParentBased(TraceIdRatioBased(RATE / 1_000_000)),
}


def _run(sampler: Sampler, parent: Any) -> None:
    should_sample = sampler.should_sample
    for trace_id in IDS:
        should_sample(parent, trace_id, "span")


@pytest.mark.parametrize("implementation", list(SAMPLERS))
def test_root_decision(benchmark: Any, implementation: str) -> None:
    benchmark.group = "should_sample: root, 1000 ids"
    benchmark(_run, SAMPLERS[implementation](), None)


@pytest.mark.parametrize("implementation", list(SAMPLERS))
def test_remote_sampled_parent(benchmark: Any, implementation: str) -> None:
    benchmark.group = "should_sample: remote sampled parent, 1000 ids"
    benchmark(_run, SAMPLERS[implementation](), REMOTE_SAMPLED)
