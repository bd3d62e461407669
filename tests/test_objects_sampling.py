"""configure(sample_linked=...) and K8S_OTEL_SAMPLE_LINKED: a linked reconcile is recorded end to end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import k8s_otel
from k8s_otel._sampling import PerMillionSampler
from k8s_otel._wiring import TracingHandle
from k8s_otel.cli._receiver import OTLPReceiver
from k8s_otel.objects import TRACEPARENT_ANNOTATION, reconcile_span

SAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01"


@pytest.fixture
def handles() -> Iterator[list[TracingHandle]]:
    made: list[TracingHandle] = []
    yield made
    for handle in made:
        handle.shutdown(2.0)


@pytest.mark.parametrize(
    ("argument", "env", "expected"),
    [(None, None, False), (None, "true", True), (False, "true", False), (True, None, True)],
)
def test_configure_offers_sample_linked(
    otlp_receiver: OTLPReceiver,
    monkeypatch: pytest.MonkeyPatch,
    handles: list[TracingHandle],
    argument: bool | None,
    env: str | None,
    expected: bool,
) -> None:
    if env is not None:
        monkeypatch.setenv("K8S_OTEL_SAMPLE_LINKED", env)
    handle = k8s_otel.configure(install=False, endpoint=otlp_receiver.endpoint, sample_linked=argument)
    handles.append(handle)
    sampler = handle.tracer_provider.sampler  # type: ignore[attr-defined]
    assert isinstance(sampler, PerMillionSampler) and sampler.sample_linked is expected
    # Kubernetes' default rate (unset: no root sampled); the stored stamp is sampled.
    stamped = {"metadata": {"name": "web", "annotations": {TRACEPARENT_ANNOTATION: SAMPLED}}}
    plain = {"metadata": {"name": "other"}}
    with reconcile_span("reconcile linked", stamped, tracer_provider=handle.tracer_provider):
        pass
    with reconcile_span("reconcile plain", plain, tracer_provider=handle.tracer_provider):
        pass
    assert handle.force_flush(10)
    if expected:
        [span] = otlp_receiver.wait_for_spans(1)
        assert (span.name, span.kind, span.parent_span_id) == ("reconcile linked", "CONSUMER", "")
        assert span.links[0][:2] == ("4bf92f3577b34da6a3ce929d0e0e4737", "00f067aa0ba902b7")
    else:
        assert otlp_receiver.spans() == []


def test_forced_linked_sampling_spends_the_sampled_parent_budget(
    otlp_receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch, handles: list[TracingHandle]
) -> None:
    from k8s_otel._trust import process_budget, reset_process_budget

    monkeypatch.setenv("K8S_OTEL_TRUSTED_SAMPLED_PARENTS_PER_SECOND", "0.001")  # a burst of one
    reset_process_budget()
    handle = k8s_otel.configure(install=False, endpoint=otlp_receiver.endpoint, sample_linked=True)
    handles.append(handle)
    sampled = []
    for index in range(5):  # anyone who can write the annotation: a hostile stream of stamps
        obj = {"metadata": {"name": f"o{index}", "annotations": {TRACEPARENT_ANNOTATION: SAMPLED}}}
        with reconcile_span("reconcile", obj, tracer_provider=handle.tracer_provider) as span:
            sampled.append(span.get_span_context().trace_flags.sampled)
    assert sampled == [True, False, False, False, False]
    assert process_budget().refused == 4
