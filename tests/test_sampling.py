"""PerMillionSampler: the Go SDK's decision for every trace id, and kube-apiserver's parent rules."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, TraceFlags, TraceState

from k8s_otel._sampling import (
    PerMillionSampler,
    TraceIDRatioBased,
    go_trace_id_upper_bound,
    parse_sampling_rate_per_million,
    per_million_sampler_from_env,
    sample_linked_from_env,
    sampler_advice,
    sampling_rate_errors,
    validate_sampling_rate_per_million,
)

LOW_64 = (1 << 64) - 1


def sampled(sampler: PerMillionSampler, trace_id: int, parent: object = None) -> bool:
    result = sampler.should_sample(parent, trace_id, "span")  # type: ignore[arg-type]
    return result.decision is Decision.RECORD_AND_SAMPLE


@pytest.mark.parametrize(
    ("rate", "bound"),
    [
        (1, 9223372036854),
        (12, 110680464442257),
        (12378, 114166899072188416),
        (500000, 4611686018427387904),
        (999999, 9223362813482738688),
    ],
)
def test_bounds_are_the_go_bounds(rate: int, bound: int) -> None:
    # Values computed by the Go SDK (kubernetes-tracing.md §6.1).
    assert go_trace_id_upper_bound(rate / 1_000_000) == bound
    assert TraceIDRatioBased(rate / 1_000_000).bound == bound


@pytest.mark.parametrize("rate", [1, 2, 7, 12, 100, 333, 488, 489, 977, 12378])
def test_exact_boundary_ids(rate: int) -> None:
    sampler = PerMillionSampler(rate)
    bound = go_trace_id_upper_bound(rate / 1_000_000)
    high = 0xDEADBEEF << 64  # the high 64 bits never matter
    assert sampled(sampler, high | (2 * bound - 1))  # x = bound - 1
    assert sampled(sampler, high | (2 * bound - 2))
    assert not sampled(sampler, high | (2 * bound))  # x = bound
    assert not sampled(sampler, high | (2 * bound + 1))


def test_differs_from_the_stock_python_sampler_where_go_does() -> None:
    # r=1: Go samples low64 < 18446744073708, Python's round(rate * 2**64) gives < 18446744073710.
    trace_id = 18446744073708
    stock = ParentBased(TraceIdRatioBased(1 / 1_000_000))
    assert stock.should_sample(None, trace_id, "s").decision is Decision.RECORD_AND_SAMPLE
    assert not sampled(PerMillionSampler(1), trace_id)
    assert sampled(PerMillionSampler(1), trace_id - 1)


# Decisions for every rate and trace id: tests/test_sampling_oracle.py (the SDK as the oracle).


@given(
    st.integers(min_value=0, max_value=1_000_000),
    st.integers(min_value=0, max_value=1_000_000),
    st.integers(min_value=1, max_value=(1 << 128) - 1),
)
def test_a_higher_rate_samples_a_superset(a: int, b: int, trace_id: int) -> None:
    low, high = sorted((a, b))
    if sampled(PerMillionSampler(low), trace_id):
        assert sampled(PerMillionSampler(high), trace_id)


def test_unset_and_zero_never_sample_roots_and_a_million_always_does() -> None:
    for trace_id in (1, 2**63, LOW_64, (1 << 128) - 1):
        assert not sampled(PerMillionSampler(None), trace_id)
        assert not sampled(PerMillionSampler(0), trace_id)
        assert sampled(PerMillionSampler(1_000_000), trace_id)


def _parent(*, remote: bool, sampled_flag: bool, state: TraceState | None = None) -> object:
    context = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=remote,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled_flag else TraceFlags.DEFAULT),
        trace_state=state,
    )
    return trace.set_span_in_context(NonRecordingSpan(context))


@pytest.mark.parametrize("remote", [True, False])
@pytest.mark.parametrize("parent_sampled", [True, False])
@pytest.mark.parametrize("rate", [None, 0, 1, 1_000_000])
def test_parent_decides_whatever_the_rate(remote: bool, parent_sampled: bool, rate: int | None) -> None:
    state = TraceState([("vendor", "value")])
    parent = _parent(remote=remote, sampled_flag=parent_sampled, state=state)
    result = PerMillionSampler(rate).should_sample(parent, 12345, "child", attributes={"a": 1})  # type: ignore[arg-type]
    assert (result.decision is Decision.RECORD_AND_SAMPLE) is parent_sampled
    assert result.trace_state == state  # passed through unchanged, as Go does
    assert dict(result.attributes or {}) == ({"a": 1} if parent_sampled else {})


def test_same_decisions_as_the_sdk_parent_based_structure() -> None:
    # The fast path must equal ParentBased with the same root for every parent shape.
    ours = PerMillionSampler(250_000)
    reference = ParentBased(TraceIDRatioBased(0.25))
    parents = [None] + [_parent(remote=r, sampled_flag=s) for r in (True, False) for s in (True, False)]
    for parent in parents:
        for trace_id in range(1, 1 << 64, (1 << 64) // 97):
            a = ours.should_sample(parent, trace_id, "s")  # type: ignore[arg-type]
            b = reference.should_sample(parent, trace_id, "s")  # type: ignore[arg-type]
            assert a.decision == b.decision


@pytest.mark.parametrize(
    ("rate", "root"),
    [
        (None, "AlwaysOffSampler"),
        (0, "AlwaysOffSampler"),
        (1, "TraceIDRatioBased{1e-06}"),
        (12, "TraceIDRatioBased{1.2e-05}"),
        (100, "TraceIDRatioBased{0.0001}"),
        (12378, "TraceIDRatioBased{0.012378}"),
        (999999, "TraceIDRatioBased{0.999999}"),
        (1_000_000, "TraceIDRatioBased{1}"),
    ],
)
def test_descriptions_are_written_as_go_writes_them(rate: int | None, root: str) -> None:
    assert PerMillionSampler(rate).get_description() == (
        f"ParentBased{{root:{root},remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,"
        "localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}"
    )


def test_zero_fraction_description() -> None:
    assert TraceIDRatioBased(0).get_description() == "TraceIDRatioBased{0}"
    assert TraceIDRatioBased(2.0).get_description() == "TraceIDRatioBased{1}"


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (True, "Invalid value: True: sampling rate per million must be an integer from 0 to 1000000"),
        (1.5, "Invalid value: 1.5: sampling rate per million must be an integer from 0 to 1000000"),
        ("100", "Invalid value: '100'"),
        (-1, "samplingRatePerMillion: Invalid value: -1: sampling rate must be positive"),
        (
            1_000_001,
            "samplingRatePerMillion: Invalid value: 1000001: "
            "sampling rate per million must be less than or equal to one million",
        ),
    ],
)
def test_invalid_rates_raise_in_the_kubernetes_wording(value: object, needle: str) -> None:
    with pytest.raises(ValueError, match="samplingRatePerMillion") as error:
        PerMillionSampler(value)  # type: ignore[arg-type]
    assert needle in str(error.value)


def test_integral_floats_are_accepted() -> None:
    assert PerMillionSampler(100.0).sampling_rate_per_million == 100  # type: ignore[arg-type]


@pytest.mark.parametrize("arg", ["100", " 100 ", "+100"])
def test_entry_point_factory_parses_the_arg(arg: str) -> None:
    sampler = per_million_sampler_from_env(arg)
    assert isinstance(sampler, PerMillionSampler)
    assert sampler.sampling_rate_per_million == 100


@pytest.mark.parametrize("arg", [None, "", "   "])
def test_entry_point_factory_unset_means_kubernetes_unset(
    arg: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        sampler = per_million_sampler_from_env(arg)
    assert isinstance(sampler, PerMillionSampler)
    assert sampler.sampling_rate_per_million is None
    assert not caplog.records


@pytest.mark.parametrize("arg", ["abc", "-1", "1000001", "1.5", "0.001", "1e3", "\x00\xff", "9" * 5000])
def test_entry_point_factory_never_raises_and_fails_closed(
    arg: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        sampler = per_million_sampler_from_env(arg)
    assert isinstance(sampler, PerMillionSampler)
    assert sampler.sampling_rate_per_million is None
    assert not sampled(sampler, LOW_64 >> 2)  # would be sampled by the SDK's always_on fallback
    [record] = caplog.records
    message = record.getMessage()
    assert "OTEL_TRACES_SAMPLER_ARG" in message
    assert repr(arg.strip()[:40]) in message  # names the bad value, bounded


# --- sample_linked (KEP-5915 reconciles) -------------------------------------------------------


def _link(sampled_flag: bool) -> Link:
    return Link(
        SpanContext(
            trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4737,
            span_id=0x00F067AA0BA902B7,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled_flag else TraceFlags.DEFAULT),
        )
    )


UNSAMPLED_ROOT_ID = (1 << 64) - 1  # far above any root bound below a million per million


def _decide(
    sampler: PerMillionSampler, parent: object, links: list[Link], trace_id: int = UNSAMPLED_ROOT_ID
) -> bool:
    result = sampler.should_sample(parent, trace_id, "reconcile", links=links)  # type: ignore[arg-type]
    return result.decision is Decision.RECORD_AND_SAMPLE


@pytest.mark.parametrize("rate", [None, 0, 100])
def test_sample_linked_samples_a_root_with_a_sampled_link(rate: int | None) -> None:
    on, off = PerMillionSampler(rate, sample_linked=True), PerMillionSampler(rate)
    assert _decide(on, None, [_link(True)])
    assert _decide(on, None, [_link(False), _link(True)])
    assert not _decide(on, None, [_link(False)])
    assert not _decide(on, None, [])
    invalid = Link(SpanContext(0, 0, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)))
    assert not _decide(on, None, [invalid])
    # Off (the default, as Go's ParentBased): links change nothing.
    assert not _decide(off, None, [_link(True)])


@pytest.mark.parametrize("parent_sampled", [True, False])
@pytest.mark.parametrize("remote", [True, False])
def test_sample_linked_never_overrides_a_valid_parent(parent_sampled: bool, remote: bool) -> None:
    sampler = PerMillionSampler(None, sample_linked=True)
    parent = _parent(remote=remote, sampled_flag=parent_sampled)
    assert _decide(sampler, parent, [_link(True)]) is parent_sampled
    assert _decide(sampler, parent, [_link(False)]) is parent_sampled


@given(rate=st.integers(0, 1_000_000), trace_id=st.integers(1, 2**128 - 1), linked=st.booleans())
def test_go_parity_is_unchanged_with_sample_linked_off_and_on_without_links(
    rate: int, trace_id: int, linked: bool
) -> None:
    go = sampled(PerMillionSampler(rate), trace_id)  # Go's decision: tests/test_sampling_oracle.py
    links = [_link(linked)]
    assert _decide(PerMillionSampler(rate), None, links, trace_id) is go
    assert sampled(PerMillionSampler(rate, sample_linked=True), trace_id) is go
    # On, a sampled link only ever adds samples.
    assert _decide(PerMillionSampler(rate, sample_linked=True), None, links, trace_id) is (go or linked)


def test_the_link_budget_bounds_forced_decisions() -> None:
    allowed = [True, False]
    sampler = PerMillionSampler(None, sample_linked=True, link_budget=lambda: allowed.pop(0))
    assert _decide(sampler, None, [_link(True)])
    assert not _decide(sampler, None, [_link(True)])  # past the budget: the root sampler decides
    assert not _decide(sampler, None, [_link(False)])  # an unsampled link does not spend budget
    assert allowed == []

    def broken() -> bool:
        raise RuntimeError("budget")

    assert not _decide(PerMillionSampler(None, sample_linked=True, link_budget=broken), None, [_link(True)])


def test_sample_linked_description_and_repr() -> None:
    assert PerMillionSampler(100).get_description().startswith("ParentBased{root:TraceIDRatioBased{0.0001},")
    on = PerMillionSampler(100, sample_linked=True)
    assert on.get_description().startswith("ParentBased{root:SampledLinkOr{TraceIDRatioBased{0.0001}},")
    assert repr(on) == "PerMillionSampler(100, sample_linked=True)"


@pytest.mark.parametrize(
    ("value", "expected"), [("", False), ("true", True), (" TRUE ", True), ("false", False), ("yes", False)]
)
def test_sample_linked_from_the_env(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str, expected: bool
) -> None:
    monkeypatch.setenv("K8S_OTEL_SAMPLE_LINKED", value)
    sampler = per_million_sampler_from_env("100")
    assert isinstance(sampler, PerMillionSampler)
    assert sampler.sample_linked is expected
    assert sample_linked_from_env() is expected
    assert any("K8S_OTEL_SAMPLE_LINKED" in r.getMessage() for r in caplog.records) is (value == "yes")


# --- one rate rule, one sampler name (issue 17) ----------------------------------------------------


@pytest.mark.parametrize("rate", [-1, -(1 << 31), 1_000_001, 1 << 30])
def test_every_path_refuses_a_rate_with_the_same_kubernetes_error(rate: int) -> None:
    from k8s_otel._config import TracingConfiguration, validate_tracing_configuration
    from k8s_otel._settings import resolve_settings

    [kubernetes] = validate_tracing_configuration(TracingConfiguration(sampling_rate_per_million=rate))
    assert kubernetes == sampling_rate_errors(rate)[0]
    assert validate_tracing_configuration(
        TracingConfiguration(sampling_rate_per_million=rate), field_path="tracing"
    ) == [f"tracing.{kubernetes}"]
    for refuse in (validate_sampling_rate_per_million, PerMillionSampler):
        with pytest.raises(ValueError, match="samplingRatePerMillion: Invalid value") as error:
            refuse(rate)
        assert str(error.value) == kubernetes
    with pytest.raises(ValueError, match="samplingRatePerMillion: Invalid value") as error:
        resolve_settings(sampling_rate_per_million=rate, environ={})
    assert str(error.value) == kubernetes
    env = resolve_settings(
        environ={"OTEL_TRACES_SAMPLER": "k8s_per_million", "OTEL_TRACES_SAMPLER_ARG": str(rate)}
    )
    assert any(kubernetes in problem for problem in env.problems)


@pytest.mark.parametrize("rate", [0, 1, 1_000_000])
def test_the_rate_rule_accepts_the_kubernetes_range(rate: int) -> None:
    assert sampling_rate_errors(rate) == []
    assert parse_sampling_rate_per_million(str(rate)) == rate


def test_the_sampler_is_a_plain_sampler() -> None:
    sampler = PerMillionSampler(100)
    assert isinstance(sampler, Sampler)
    assert not isinstance(sampler, ParentBased)


def test_the_old_keyword_still_works_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="sampling_rate_per_million"):
        sampler = PerMillionSampler(samples_per_million=100)  # type: ignore[call-arg]
    assert sampler.sampling_rate_per_million == 100
    assert sampler.get_description() == PerMillionSampler(sampling_rate_per_million=100).get_description()
    with pytest.warns(DeprecationWarning, match="sampling_rate_per_million"):
        assert sampler.samples_per_million == 100


def test_the_old_and_new_keyword_together_or_an_unknown_one_raise() -> None:
    with pytest.raises(TypeError, match="both"):
        PerMillionSampler(100, samples_per_million=100)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'rate'"):
        PerMillionSampler(rate=100)  # type: ignore[call-arg]


def test_the_new_name_raises_no_warning() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert PerMillionSampler(sampling_rate_per_million=5).sampling_rate_per_million == 5


@pytest.mark.parametrize(
    ("sampler", "arg", "rate"),
    [
        ("parentbased_traceidratio", "0.0001", "100"),
        ("traceidratio", " 1 ", "1000000"),
        ("traceidratio", "0", "0"),
        ("traceidratio", "2", "<samples per million>"),
        ("traceidratio", "nan", "<samples per million>"),
        ("traceidratio", None, "<samples per million>"),
        ("always_on", "0.5", "<samples per million>"),
    ],
)
def test_one_fix_for_another_sampler(sampler: str, arg: str | None, rate: str) -> None:
    assert (
        sampler_advice(sampler, arg)
        == f"set OTEL_TRACES_SAMPLER=k8s_per_million and OTEL_TRACES_SAMPLER_ARG={rate}"
    )
