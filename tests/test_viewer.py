"""TraceViewer: spans grouped by trace across batches, shown once settled, filtered, bounded."""

from __future__ import annotations

import re

import pytest

from k8s_otel.cli._receiver import ReceivedSpan
from k8s_otel.cli._viewer import SpanFilter, TraceViewer, parse_filter


def span(trace: str, span_id: str, *, service: str = "svc", **attributes: object) -> ReceivedSpan:
    return ReceivedSpan(
        trace_id=trace * 32,
        span_id=span_id * 16,
        parent_span_id="",
        name=span_id,
        kind="INTERNAL",
        start_time_unix_nano=1,
        end_time_unix_nano=2,
        attributes=dict(attributes),
        resource={"service.name": service},
        scope="",
        status_code="UNSET",
        status_message="",
        links=(),
        events=(),
        flags=1,
        trace_state="",
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def viewer(clock: Clock, **options: object) -> tuple[TraceViewer, list[tuple[str, list[str], bool]]]:
    shown: list[tuple[str, list[str], bool]] = []
    view = TraceViewer(
        lambda trace_id, spans, continued: shown.append((trace_id[0], [s.name[0] for s in spans], continued)),
        clock=clock,
        **options,  # type: ignore[arg-type]
    )
    return view, shown


def test_batches_of_one_trace_are_shown_together_once_quiet() -> None:
    clock = Clock()
    view, shown = viewer(clock, settle=2.0)
    view.add([span("a", "1")])
    clock.now = 1.5
    view.add([span("a", "2"), span("b", "3")])
    clock.now = 3.0
    assert view.flush() == 0  # a batch arrived 1.5 s ago: not settled yet
    clock.now = 3.5
    assert view.flush() == 2
    assert shown == [("a", ["1", "2"], False), ("b", ["3"], False)]


def test_late_spans_come_out_as_a_continuation() -> None:
    clock = Clock()
    view, shown = viewer(clock, settle=1.0)
    view.add([span("a", "1")])
    clock.now = 2
    view.flush()
    view.add([span("a", "2")])
    view.flush(everything=True)
    assert shown == [("a", ["1"], False), ("a", ["2"], True)]


def test_a_trace_that_never_goes_quiet_is_shown_after_max_wait() -> None:
    clock = Clock()
    view, shown = viewer(clock, settle=1.0, max_wait=5.0)
    for second in range(7):
        clock.now = second * 0.9
        view.add([span("a", str(second))])
        view.flush()
    assert shown == [("a", list("0123456"), False)]  # at 5.4 s, though never quiet for 1 s


def test_what_is_held_is_bounded() -> None:
    clock = Clock()
    view, shown = viewer(clock, max_pending_spans=10)
    for index in range(30):
        view.add([span("abcdef0123456789"[index % 16], str(index % 10))])
    assert sum(view.pending().values()) <= 10
    assert sum(len(names) for _, names, _ in shown) + sum(view.pending().values()) == 30


def test_filters_need_every_condition_met_by_some_span() -> None:
    trace = [
        span("a", "1", service="apiserver", UID="u-1"),
        span("a", "2", service="hook", operation="CREATE"),
    ]
    assert SpanFilter(uid="u-1", service="hook").matches(trace)
    assert SpanFilter(attributes=(("operation", "CREATE"), ("service.name", "apiserver"))).matches(trace)
    assert not SpanFilter(uid="u-2").matches(trace)
    assert not SpanFilter(uid="u-1", attributes=(("operation", "DELETE"),)).matches(trace)
    assert SpanFilter().matches(trace)
    assert SpanFilter(attributes=(("flag", "true"),)).matches([span("a", "1", flag=True)])


def test_a_filtered_out_trace_stays_out_when_more_spans_arrive() -> None:
    clock = Clock()
    view, shown = viewer(clock, settle=1.0, span_filter=SpanFilter(service="wanted"))
    view.add([span("a", "1", service="other")])
    clock.now = 2
    view.flush()
    view.add([span("a", "2", service="wanted")])
    view.add([span("b", "3", service="wanted")])
    view.flush(everything=True)
    assert shown == [("b", ["3"], False)]


@pytest.mark.parametrize(("text", "pair"), [("k=v", ("k", "v")), ("k=", ("k", "")), ("a=b=c", ("a", "b=c"))])
def test_parse_filter(text: str, pair: tuple[str, str]) -> None:
    assert parse_filter(text) == pair


@pytest.mark.parametrize("text", ["novalue", "=v", ""])
def test_parse_filter_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text))):  # names the filter refused
        parse_filter(text)
