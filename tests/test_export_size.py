"""One huge span never costs its batch-mates: requests over gRPC's 4 MiB limit are split."""

from __future__ import annotations

import pytest

import k8s_otel
from k8s_otel._wiring import DEFAULT_ATTRIBUTE_VALUE_LENGTH
from k8s_otel.cli._receiver import OTLPReceiver


def test_a_5_mib_attribute_is_cut_by_the_default_length_limit(otlp_receiver: OTLPReceiver) -> None:
    handle = k8s_otel.configure(
        install=False, endpoint=otlp_receiver.endpoint, sampling_rate_per_million=1_000_000
    )
    tracer = handle.tracer_provider.get_tracer("t")
    with tracer.start_as_current_span("huge") as span:
        span.set_attribute("request.name", "n" * (5 << 20))
    assert handle.shutdown(5)
    (received,) = otlp_receiver.wait_for_spans(1)
    assert len(received.attributes["request.name"]) == DEFAULT_ATTRIBUTE_VALUE_LENGTH


@pytest.mark.parametrize("huge_spans", [1, 3])
def test_an_oversized_batch_is_split_and_only_the_oversized_span_is_lost(
    otlp_receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch, huge_spans: int
) -> None:
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", str(10 << 20))  # the user lifted the limit
    monkeypatch.setenv("OTEL_BSP_EXPORT_TIMEOUT", "2000")
    handle = k8s_otel.configure(
        install=False, endpoint=otlp_receiver.endpoint, sampling_rate_per_million=1_000_000
    )
    tracer = handle.tracer_provider.get_tracer("t")
    for index in range(40):
        with tracer.start_as_current_span(f"span {index}") as span:
            if index % 13 == 5 and index // 13 < huge_spans:
                span.set_attribute("blob", "x" * (5 << 20))  # over 4 MiB alone
            else:
                span.set_attribute("blob", "y" * (200 << 10))  # 40 x 200 KiB: 8 MiB together
    handle.shutdown(20)
    names = {span.name for span in otlp_receiver.spans()}
    lost = {f"span {index}" for index in range(40) if index % 13 == 5 and index // 13 < huge_spans}
    assert names == {f"span {index}" for index in range(40)} - lost
    stats = handle.statistics()
    assert (stats.ended, stats.exported, stats.failed, stats.dropped, stats.pending) == (
        40,
        40 - huge_spans,
        huge_spans,
        0,
        0,
    )
    assert all(len(request.request.SerializeToString()) <= 4 << 20 for request in otlp_receiver.requests)
