"""Trust policy: parent, or new root with a link, as kube-apiserver decides for its callers."""

from __future__ import annotations

import pytest
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from k8s_otel.propagation import extract
from k8s_otel.trust import LINK, TRUST, Caller, TrustPolicy, kube_apiserver_rule

INCOMING = extract(
    {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "baggage": "tenant=a"}
)


def start(policy: TrustPolicy, **kwargs: object) -> trace.Span:
    """Start a real SDK span the way the adapters do, and return it ended."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    parent, links = policy.resolve(INCOMING, **kwargs)  # type: ignore[arg-type]
    provider.get_tracer("t").start_span("server", context=parent, links=links).end()
    [span] = exporter.get_finished_spans()
    return span  # type: ignore[return-value]


def test_trust_makes_the_incoming_context_the_parent() -> None:
    span = start(TRUST)
    assert span.parent is not None and span.parent.span_id == 0x00F067AA0BA902B7  # type: ignore[attr-defined]
    assert span.context.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736  # type: ignore[attr-defined]
    assert not span.links  # type: ignore[attr-defined]
    assert TRUST.resolve(INCOMING)[0] is INCOMING


def test_link_starts_a_new_root_with_a_link_and_drops_baggage() -> None:
    span = start(LINK)
    assert span.parent is None  # type: ignore[attr-defined]
    assert span.context.trace_id != 0x4BF92F3577B34DA6A3CE929D0E0E4736  # type: ignore[attr-defined]
    [link] = span.links  # type: ignore[attr-defined]
    assert (link.context.trace_id, link.context.span_id) == (
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
    )
    parent, _ = LINK.resolve(INCOMING)
    assert baggage.get_all(parent) == {}


def test_untrusted_baggage_can_be_kept() -> None:
    parent, links = TrustPolicy("link", keep_untrusted_baggage=True).resolve(INCOMING)
    assert baggage.get_all(parent) == {"tenant": "a"}
    assert not trace.get_current_span(parent).get_span_context().is_valid
    assert len(links) == 1


def test_link_without_incoming_context_has_no_link() -> None:
    _, links = LINK.resolve(extract({}))
    assert links == ()


@pytest.mark.parametrize(
    ("groups", "trusted"),
    [
        (["system:masters"], True),
        (["system:authenticated", "system:monitoring"], True),
        (["system:authenticated"], False),
        ([], False),
        (None, False),
    ],
)
def test_the_kube_apiserver_rule(groups: list[str] | None, trusted: bool) -> None:
    assert kube_apiserver_rule(Caller(groups)) is trusted
    policy = TrustPolicy.parse("kube-apiserver")
    parent, links = policy.resolve(INCOMING, groups=groups)
    assert (parent is INCOMING) is trusted
    assert len(links) == (0 if trusted else 1)


def test_a_rule_sees_the_request_and_a_broken_rule_does_not_trust() -> None:
    seen: list[object] = []

    def rule(caller: Caller) -> bool:
        seen.append(caller.request)
        return caller.request == "from-the-apiserver"

    policy = TrustPolicy.decide_with(rule)
    assert policy.resolve(INCOMING, request="from-the-apiserver")[0] is INCOMING
    assert policy.resolve(INCOMING, request="other")[0] is not INCOMING
    assert seen == ["from-the-apiserver", "other"]

    def broken(caller: Caller) -> bool:
        raise RuntimeError("boom")

    assert TrustPolicy.parse(broken).resolve(INCOMING)[0] is not INCOMING


def test_parse() -> None:
    assert TrustPolicy.parse("trust") is TRUST
    assert TrustPolicy.parse(" LINK ") is LINK
    assert TrustPolicy.parse(LINK) is LINK
    for bad in ("parent", "", 3):
        with pytest.raises(ValueError, match="trust policy"):
            TrustPolicy.parse(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        TrustPolicy("maybe")
    with pytest.raises(ValueError, match="rule exactly when"):
        TrustPolicy("rule")
