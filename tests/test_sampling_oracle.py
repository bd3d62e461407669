"""PerMillionSampler against an oracle that shares no code with it: the SDK's ``TraceIdRatioBased``.

Go samples a root iff ``(low64 >> 1) < floor(f * 2**63)``, that is iff ``low64 < 2 * floor(f * 2**63)``;
the Python SDK iff ``low64 < round(f * 2**64)`` (kubernetes-tracing.md §6.1). ``f * 2**63`` is an
exact float product, so the two thresholds are equal whenever it is an integer, which holds for
every rate of at least 2**-11 (489 per million and up). Below that the Go threshold is 0, 1 or 2
lower than the SDK's ``bound``: the ids ``bound - 2`` and ``bound - 1`` are the only ones where
the two may disagree, and there only the SDK samples. Everywhere else the SDK decides for us.

Only the public constructor ``PerMillionSampler(rate)`` (positional) and ``should_sample`` are used.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Decision, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from k8s_otel import PerMillionSampler

LOW_64 = (1 << 64) - 1
MILLION = 1_000_000
#: The smallest rate per million from which Go's and the SDK's thresholds are equal (2**-11 * 1e6).
FIRST_EXACT_RATE = 489
#: Go's ``traceIDUpperBound`` for these rates, computed by the Go SDK (kubernetes-tracing.md §6.1).
GO_BOUNDS = {
    1: 9223372036854,
    12: 110680464442257,
    12378: 114166899072188416,
    500000: 4611686018427387904,
    999999: 9223362813482738688,
}

trace_ids = st.integers(min_value=1, max_value=(1 << 128) - 1)


def oracle(rate: int | None) -> Sampler:
    """What the SDK builds for kube-apiserver's rule: ``ParentBased(TraceIdRatioBased(rate / 1e6))``."""
    return ParentBased(TraceIdRatioBased(rate / MILLION) if rate else ALWAYS_OFF)


def sdk_threshold(rate: int) -> int:
    return TraceIdRatioBased(rate / MILLION).bound


def samples(sampler: Sampler, trace_id: int, parent: object = None) -> bool:
    return sampler.should_sample(parent, trace_id, "span").decision is Decision.RECORD_AND_SAMPLE  # type: ignore[arg-type]


def may_differ(rate: int, trace_id: int) -> bool:
    """The two ids below the SDK's bound, at the rates where Go truncates a fraction away."""
    if rate >= FIRST_EXACT_RATE or rate <= 0:
        return False
    return sdk_threshold(rate) - 2 <= trace_id & LOW_64 < sdk_threshold(rate)


@given(st.integers(min_value=FIRST_EXACT_RATE, max_value=MILLION), trace_ids)
@example(FIRST_EXACT_RATE, 2 * GO_BOUNDS[12378])
@example(MILLION, LOW_64)
def test_from_489_per_million_every_decision_is_the_sdks(rate: int, trace_id: int) -> None:
    assert samples(PerMillionSampler(rate), trace_id) == samples(oracle(rate), trace_id)


@given(st.integers(min_value=0, max_value=FIRST_EXACT_RATE - 1), trace_ids)
def test_below_489_per_million_every_other_id_is_decided_as_the_sdk_does(rate: int, trace_id: int) -> None:
    if not may_differ(rate, trace_id):
        assert samples(PerMillionSampler(rate), trace_id) == samples(oracle(rate), trace_id)


@given(st.integers(min_value=1, max_value=FIRST_EXACT_RATE - 1), st.integers(min_value=0, max_value=LOW_64))
def test_the_ids_just_at_and_around_the_sdks_bound(rate: int, high: int) -> None:
    # Hypothesis rarely hits a bound by chance: these are the ids where a wrong threshold shows.
    bound = sdk_threshold(rate)
    ours, theirs = PerMillionSampler(rate), oracle(rate)
    for low in (bound - 3, bound, bound + 1):
        trace_id = (high << 64) | low
        assert samples(ours, trace_id) == samples(theirs, trace_id)
    # Where the two may differ only the SDK samples more: Go's threshold is never the higher one.
    for low in (bound - 2, bound - 1):
        trace_id = (high << 64) | low
        assert samples(theirs, trace_id)
        assert samples(ours, trace_id) <= samples(theirs, trace_id)


@pytest.mark.parametrize("rate", sorted(GO_BOUNDS))
def test_the_go_bounds_decide_where_the_sdk_and_go_part(rate: int) -> None:
    go_threshold = 2 * GO_BOUNDS[rate]  # low64 >> 1 < bound  <=>  low64 < 2 * bound
    ours = PerMillionSampler(rate)
    assert samples(ours, go_threshold - 1)
    assert not samples(ours, go_threshold)
    gap = sdk_threshold(rate) - go_threshold
    assert 0 <= gap <= 2
    if rate >= FIRST_EXACT_RATE:
        assert gap == 0
    for low in range(go_threshold, go_threshold + gap):  # the documented divergence: SDK yes, Go no
        assert samples(oracle(rate), low) and not samples(ours, low)


def test_the_documented_divergence_at_one_per_million() -> None:
    # kubernetes-tracing.md §6.1: r=1, Go samples low64 < 18446744073708, the SDK < 18446744073710.
    assert sdk_threshold(1) == 18446744073710
    ours, theirs = PerMillionSampler(1), oracle(1)
    assert [samples(ours, low) for low in range(18446744073706, 18446744073711)] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert [samples(theirs, low) for low in range(18446744073706, 18446744073711)] == [
        True,
        True,
        True,
        True,
        False,
    ]


def test_the_thresholds_differ_only_below_489_per_million() -> None:
    # Every rate where Go's threshold could fall below the SDK's, decided through should_sample.
    differing = []
    for rate in range(1, 2 * FIRST_EXACT_RATE):
        bound = sdk_threshold(rate)
        ours = PerMillionSampler(rate)
        assert samples(ours, bound - 3) and not samples(ours, bound)
        if not (samples(ours, bound - 2) and samples(ours, bound - 1)):
            differing.append(rate)
    assert max(differing) < FIRST_EXACT_RATE
    assert len(differing) == 266  # kubernetes-tracing.md §6.1 (derived over r = 1 ... 1000000)
    assert 1 in differing and 12 in differing


@pytest.mark.parametrize("rate", [None, 0, 1, 488, 489, 12378, MILLION])
@pytest.mark.parametrize(
    ("remote", "parent_sampled"), [(True, True), (True, False), (False, True), (False, False)]
)
def test_a_valid_parent_decides_as_the_sdks_parent_based(
    rate: int | None, remote: bool, parent_sampled: bool
) -> None:
    flags = TraceFlags(TraceFlags.SAMPLED if parent_sampled else TraceFlags.DEFAULT)
    parent = set_span_in_context(
        NonRecordingSpan(SpanContext(0xAB, 0xCD, is_remote=remote, trace_flags=flags))
    )
    for trace_id in (1, 18446744073708, LOW_64, (1 << 128) - 1):
        expected = samples(oracle(rate), trace_id, parent)
        assert expected == parent_sampled
        assert samples(PerMillionSampler(rate), trace_id, parent) == expected


@given(trace_ids)
def test_unset_and_zero_are_the_sdks_always_off_root(trace_id: int) -> None:
    for rate in (None, 0):
        assert samples(PerMillionSampler(rate), trace_id) == samples(oracle(rate), trace_id) is False
