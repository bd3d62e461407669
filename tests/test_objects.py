"""Trace context in objects (KEP-5915): the carrier, inject/extract, and reconcile spans."""

from __future__ import annotations

import logging
from typing import Any, Callable

import kubernetes
import kubernetes_asyncio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import get_global_textmap
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from k8s_otel.objects import (
    BAGGAGE_ANNOTATION,
    TRACEPARENT_ANNOTATION,
    TRACESTATE_ANNOTATION,
    AnnotationCarrier,
    annotation_getter,
    annotation_setter,
    extract_context,
    inject_context,
    reconcile_span,
    start_reconcile_span,
    stored_span_context,
)
from recording import recording_provider

TRACE_ID, SPAN_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4737, 0x00F067AA0BA902B7
SAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01"


def context_of(
    sampled: bool = True, trace_state: TraceState | None = None, span_id: int = SPAN_ID
) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else 0)
    span_context = SpanContext(TRACE_ID, span_id, is_remote=False, trace_flags=flags, trace_state=trace_state)
    return trace.set_span_in_context(NonRecordingSpan(span_context))


# The three forms controllers hold: a dict, a kubernetes / kubernetes_asyncio model, bare metadata.
FORMS: dict[str, Callable[[], Any]] = {
    "dict": lambda: {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}},
    "dict without metadata": lambda: {"apiVersion": "v1", "kind": "ConfigMap"},
    "empty patch": dict,
    "kubernetes model": lambda: kubernetes.client.V1ConfigMap(
        metadata=kubernetes.client.V1ObjectMeta(name="cm")
    ),
    "kubernetes model without metadata": lambda: kubernetes.client.V1ConfigMap(),
    "kubernetes_asyncio model": lambda: kubernetes_asyncio.client.V1Pod(
        metadata=kubernetes_asyncio.client.V1ObjectMeta(name="p")
    ),
    "kubernetes_asyncio model without metadata": lambda: kubernetes_asyncio.client.V1Pod(),
    "bare metadata mapping": lambda: {"name": "cm", "namespace": "default"},
    "bare V1ObjectMeta": lambda: kubernetes.client.V1ObjectMeta(name="cm"),
}


def annotations(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        metadata = obj if "name" in obj and "metadata" not in obj else obj.get("metadata") or {}
        return dict(metadata.get("annotations") or {})
    metadata = obj if isinstance(obj, kubernetes.client.V1ObjectMeta) else obj.metadata
    return dict(metadata.annotations or {})


@pytest.mark.parametrize("form", FORMS)
def test_inject_then_extract_round_trips_on_every_form(form: str) -> None:
    obj = FORMS[form]()
    assert inject_context(obj, context_of())
    assert annotations(obj) == {TRACEPARENT_ANNOTATION: SAMPLED}
    span_context = stored_span_context(obj)
    assert span_context is not None
    assert (span_context.trace_id, span_context.span_id, span_context.is_remote) == (TRACE_ID, SPAN_ID, True)
    assert span_context.trace_flags.sampled


def test_a_dict_keeps_its_other_annotations_and_a_model_serializes_with_the_stamp() -> None:
    obj = {"metadata": {"name": "cm", "annotations": {"team": "a"}}}
    inject_context(obj, context_of())
    assert obj["metadata"]["annotations"] == {"team": "a", TRACEPARENT_ANNOTATION: SAMPLED}
    model = kubernetes.client.V1ConfigMap()
    inject_context(model, context_of())
    body = kubernetes.client.ApiClient().sanitize_for_serialization(model)
    assert body == {"metadata": {"annotations": {TRACEPARENT_ANNOTATION: SAMPLED}}}


def test_the_current_context_is_the_default() -> None:
    provider, _ = recording_provider()
    obj: dict[str, Any] = {}
    with provider.get_tracer("t").start_as_current_span("write") as span:
        assert inject_context(obj)
    assert stored_span_context(obj) == SpanContext(
        span.get_span_context().trace_id,
        span.get_span_context().span_id,
        is_remote=True,
        trace_flags=span.get_span_context().trace_flags,
    )


def test_an_unsampled_stamp_overwrites_a_stale_sampled_one() -> None:
    obj: dict[str, Any] = {"metadata": {"annotations": {TRACEPARENT_ANNOTATION: SAMPLED}}}
    assert inject_context(obj, context_of(sampled=False, span_id=0x1111111111111111))
    assert obj["metadata"]["annotations"][TRACEPARENT_ANNOTATION] == (
        "00-4bf92f3577b34da6a3ce929d0e0e4737-1111111111111111-00"
    )
    span_context = stored_span_context(obj)
    assert span_context is not None and not span_context.trace_flags.sampled


def test_no_valid_span_context_writes_nothing_and_keeps_the_old_stamp() -> None:
    obj: dict[str, Any] = {"metadata": {"annotations": {TRACEPARENT_ANNOTATION: SAMPLED}}}
    assert not inject_context(obj, Context())
    assert not inject_context(obj)  # nothing is current either
    assert obj["metadata"]["annotations"] == {TRACEPARENT_ANNOTATION: SAMPLED}
    empty: dict[str, Any] = {"metadata": {}}
    assert not inject_context(empty, Context())
    assert empty == {"metadata": {}}


def test_tracestate_goes_with_its_traceparent_and_a_stale_one_is_removed() -> None:
    obj: dict[str, Any] = {}
    inject_context(obj, context_of(trace_state=TraceState([("vendor", "v1")])))
    assert annotations(obj)[TRACESTATE_ANNOTATION] == "vendor=v1"
    span_context = stored_span_context(obj)
    assert span_context is not None and span_context.trace_state.get("vendor") == "v1"
    inject_context(obj, context_of())
    assert TRACESTATE_ANNOTATION not in annotations(obj)


def test_baggage_is_opt_in_both_ways() -> None:
    from opentelemetry import baggage

    context = baggage.set_baggage("tenant", "a", context_of())
    obj: dict[str, Any] = {}
    inject_context(obj, context)
    assert BAGGAGE_ANNOTATION not in annotations(obj)
    inject_context(obj, context, baggage=True)
    assert annotations(obj)[BAGGAGE_ANNOTATION] == "tenant=a"
    assert baggage.get_all(extract_context(obj)) == {}
    assert baggage.get_all(extract_context(obj, baggage=True)) == {"tenant": "a"}


def test_a_read_only_body_is_not_stamped_and_nothing_raises() -> None:
    import kopf

    body = kopf.Body({"metadata": {"name": "x"}})
    assert not inject_context(body, context_of())
    assert not inject_context(42, context_of())
    assert not inject_context(None, context_of())
    assert stored_span_context(kopf.Body({"metadata": {"annotations": {TRACEPARENT_ANNOTATION: SAMPLED}}}))


def test_the_carrier_works_with_any_propagator() -> None:
    obj: dict[str, Any] = {}
    carrier = AnnotationCarrier(obj)
    get_global_textmap().inject(carrier, context_of(), setter=annotation_setter)
    assert annotations(obj)[TRACEPARENT_ANNOTATION] == SAMPLED
    assert "traceparent" in annotation_getter.keys(carrier)
    context = get_global_textmap().extract(carrier, getter=annotation_getter)
    assert trace.get_current_span(context).get_span_context().span_id == SPAN_ID


@pytest.mark.parametrize(
    "value",
    [
        "00-zz-not-a-traceparent",
        SAMPLED.upper(),
        f"{SAMPLED},{SAMPLED}",  # duplicated: two values folded into one
        SAMPLED + "-extra",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "x" * 100_000,  # oversized
        42,
        ["list"],
        None,
        "",
    ],
)
def test_a_malformed_value_is_ignored_and_logged_at_debug(
    value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="k8s_otel.objects")
    obj = {"metadata": {"annotations": {TRACEPARENT_ANNOTATION: value}}}
    assert stored_span_context(obj) is None
    if value is not None:
        assert any("ignoring" in r.getMessage() for r in caplog.records)
    assert all(str(value)[:20] not in r.getMessage() for r in caplog.records if value)


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(
        st.text(max_size=80),
        st.from_regex(r"[0-9a-fA-F]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?", fullmatch=True),
        st.binary(max_size=40),
        st.integers(),
        st.none(),
        st.lists(st.text(max_size=5), max_size=3),
        st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    ),
    state=st.one_of(st.none(), st.text(max_size=80)),
    metadata=st.sampled_from(["annotations", "none", "list", "string"]),
)
def test_no_stored_value_makes_extract_raise(value: Any, state: Any, metadata: str) -> None:
    stored = {TRACEPARENT_ANNOTATION: value, TRACESTATE_ANNOTATION: state, BAGGAGE_ANNOTATION: state}
    shapes: dict[str, Any] = {
        "annotations": {"metadata": {"annotations": stored}},
        "none": {"metadata": None},
        "list": {"metadata": [stored]},
        "string": {"metadata": "annotations"},
    }
    obj = shapes[metadata]
    context = extract_context(obj, baggage=True)
    span_context = trace.get_current_span(context).get_span_context()
    if span_context.is_valid:  # only a well-formed string makes a context
        assert isinstance(value, str) and metadata == "annotations"
    # A round trip through inject keeps a valid stored context as it was.
    if span_context.is_valid:
        again: dict[str, Any] = {}
        inject_context(again, context)
        assert stored_span_context(again) == SpanContext(
            span_context.trace_id,
            span_context.span_id,
            True,
            span_context.trace_flags,
            span_context.trace_state,
        )


@settings(max_examples=200, deadline=None)
@given(
    trace_id=st.integers(1, 2**128 - 1),
    span_id=st.integers(1, 2**64 - 1),
    flags=st.integers(0, 255),
    form=st.sampled_from(sorted(FORMS)),
)
def test_inject_then_extract_round_trips_any_valid_context(
    trace_id: int, span_id: int, flags: int, form: str
) -> None:
    span_context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(flags))
    obj = FORMS[form]()
    assert inject_context(obj, trace.set_span_in_context(NonRecordingSpan(span_context)))
    stored = stored_span_context(obj)
    assert stored is not None
    assert (stored.trace_id, stored.span_id, int(stored.trace_flags)) == (trace_id, span_id, flags & 0x03)


# --- reconcile spans ---------------------------------------------------------------------------


def test_a_reconcile_span_is_a_new_consumer_root_linked_to_the_stored_context() -> None:
    provider, memory = recording_provider()
    tracer = provider.get_tracer("t")
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "team-a",
            "uid": "u-1",
            "annotations": {TRACEPARENT_ANNOTATION: SAMPLED},
        },
    }
    with (
        tracer.start_as_current_span("unrelated"),
        reconcile_span("reconcile Deployment", obj, tracer_provider=provider) as span,
    ):
        assert trace.get_current_span() is span
        child: dict[str, Any] = {}
        inject_context(child)
    reconcile = next(s for s in memory.get_finished_spans() if s.name == "reconcile Deployment")
    assert reconcile.kind.name == "CONSUMER"
    assert reconcile.parent is None  # a root, whatever was current
    [link] = reconcile.links
    assert (link.context.trace_id, link.context.span_id) == (TRACE_ID, SPAN_ID)
    assert dict(link.attributes or {}) == {"k8s_otel.link.annotation": TRACEPARENT_ANNOTATION}
    assert dict(reconcile.attributes or {}) == {
        "api-group": "apps",
        "api-version": "v1",
        "name": "web",
        "k8s.namespace.name": "team-a",
        "metadata.uid": "u-1",
        "k8s.deployment.name": "web",
        "k8s.deployment.uid": "u-1",
    }
    # The object written inside is stamped with the reconcile span: the next link in the chain.
    stamped = stored_span_context(child)
    assert stamped is not None and stamped.span_id == reconcile.context.span_id


def test_without_a_stored_context_the_reconcile_is_an_unlinked_root() -> None:
    provider, memory = recording_provider()
    span = start_reconcile_span(
        "reconcile", kubernetes.client.V1Pod(api_version="v1", kind="Pod", metadata=kubernetes.client.V1ObjectMeta(name="p", namespace="ns")),
        tracer_provider=provider, attributes={"name": "mine", "controller": "c"},
    )  # fmt: skip
    span.end()
    [finished] = memory.get_finished_spans()
    assert finished.kind.name == "CONSUMER" and not finished.links and finished.parent is None
    assert dict(finished.attributes or {}) == {
        "name": "mine",
        "controller": "c",
        "api-version": "v1",
        "k8s.namespace.name": "ns",
        "k8s.pod.name": "p",
    }


def test_an_error_in_the_reconcile_is_recorded_without_its_text_and_raised() -> None:
    provider, memory = recording_provider()
    secret = "c2VjcmV0"
    with (
        pytest.raises(ValueError, match=secret),
        reconcile_span("reconcile", {}, tracer_provider=provider),
    ):
        raise ValueError(f"bad {secret}")
    [span] = memory.get_finished_spans()
    assert span.status.status_code.name == "ERROR"
    assert secret not in str(span.events[0].attributes) + str(span.status.description)


def test_an_unsampled_reconcile_reads_nothing_but_still_links() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    obj: dict[str, Any] = {"metadata": {"annotations": {TRACEPARENT_ANNOTATION: SAMPLED}}}
    with reconcile_span("reconcile", obj, tracer_provider=provider) as span:
        assert not span.is_recording()
        assert span.get_span_context().is_valid  # children and stamps still get a context
        child: dict[str, Any] = {}
        assert inject_context(child)
    assert memory.get_finished_spans() == ()


def test_the_docs_name_every_key_and_variable() -> None:
    from pathlib import Path

    from k8s_otel import _attributes, objects
    from k8s_otel._sampling import SAMPLE_LINKED_ENV
    from k8s_otel.instrumentation._stamp import INJECT_OBJECT_CONTEXT_ENV

    docs = (Path(__file__).resolve().parents[1] / "docs" / "objects.md").read_text()
    names = [
        objects.TRACEPARENT_ANNOTATION,
        objects.TRACESTATE_ANNOTATION,
        objects.BAGGAGE_ANNOTATION,
        _attributes.LINK_ANNOTATION,
        _attributes.OBJECT_UID,
        SAMPLE_LINKED_ENV,
        INJECT_OBJECT_CONTEXT_ENV,
        "K8S_OTEL_RECORD_EXCEPTION_MESSAGES",
    ]
    from doc_tables import first_words

    assert [name for name in names if name not in first_words(docs)] == []  # whole tokens, not prefixes


@pytest.mark.parametrize("where", ["on_start", "on_end"])
def test_a_broken_span_processor_never_breaks_the_reconcile(where: str) -> None:
    from opentelemetry.sdk.trace import SpanProcessor

    class Broken(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            if where == "on_start":
                raise RuntimeError("processor")

        def on_end(self, span: Any) -> None:
            if where == "on_end":
                raise RuntimeError("processor")

    provider = TracerProvider()
    provider.add_span_processor(Broken())
    ran = []
    with reconcile_span("reconcile", {"metadata": {"name": "x"}}, tracer_provider=provider):
        ran.append(True)
    assert ran == [True]


def test_tracer_is_deprecated_for_tracer_provider_and_still_works() -> None:
    provider, memory = recording_provider()
    with pytest.warns(DeprecationWarning, match="tracer_provider"):
        start_reconcile_span("started", {}, tracer=provider.get_tracer("t")).end()
    with (
        pytest.warns(DeprecationWarning, match="tracer_provider"),
        reconcile_span("managed", {}, tracer=provider.get_tracer("t")),
    ):
        pass
    with reconcile_span("new", {}, tracer_provider=provider):
        pass
    assert [s.name for s in memory.get_finished_spans()] == ["started", "managed", "new"]
    assert memory.get_finished_spans()[2].instrumentation_scope.name == "k8s_otel.objects"  # type: ignore[union-attr]


def test_reconcile_spans_go_to_the_provider_given_each_time() -> None:
    first, first_memory = recording_provider()
    second, second_memory = recording_provider()
    for provider in (first, second, first, second, second):
        with reconcile_span("reconcile", {}, tracer_provider=provider):
            pass
    assert len(first_memory.get_finished_spans()) == 2
    assert len(second_memory.get_finished_spans()) == 3
