"""The waterfall drawing: golden outputs for the shapes traces really take, and properties for any."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k8s_otel.cli._receiver import ReceivedSpan
from k8s_otel.cli._waterfall import (
    ASCII,
    UNICODE,
    display_width,
    fit,
    printable,
    render_waterfall,
    trace_trees,
)

GOLDEN = Path(__file__).parent / "golden"
T0 = 1_764_600_000_000_000_000
MS = 1_000_000
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def span(
    span_id: str,
    parent: str,
    name: str,
    start_ms: float,
    end_ms: float,
    *,
    service: str = "apiserver",
    kind: str = "INTERNAL",
    status: str = "UNSET",
    message: str = "",
    events: tuple[tuple[str, dict[str, Any], float], ...] = (),
    links: tuple[tuple[str, str, dict[str, Any]], ...] = (),
    trace_id: str = TRACE,
    **attributes: Any,
) -> ReceivedSpan:
    return ReceivedSpan(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=kind,
        start_time_unix_nano=T0 + int(start_ms * MS),
        end_time_unix_nano=T0 + int(end_ms * MS),
        attributes=attributes,
        resource={"service.name": service},
        scope="test",
        status_code=status,
        status_message=message,
        links=links,
        events=tuple((n, a) for n, a, _ in events),
        flags=1,
        trace_state="",
        event_times_unix_nano=tuple(T0 + int(at * MS) for _, _, at in events),
    )


# The demo's shape: kube-apiserver's three spans, the webhook's SERVER span ending after the
# apiserver's HTTP POST (the WSGI span ends after the response is written), and the policy check.
JOINED = [
    span("a1" * 8, "", "POST /apis/apps/v1/namespaces/{:namespace}/deployments", 0, 4.0, kind="SERVER"),
    span(
        "a2" * 8,
        "a1" * 8,
        "Call validating webhook",
        0.2,
        3.6,
        events=(("Request completed", {}, 3.55),),
        UID="705ab4f5-6393-11e8-b7cc-42010a800002",
    ),
    span("a3" * 8, "a2" * 8, "HTTP POST", 0.3, 3.5, kind="CLIENT"),
    span(
        "b1" * 8,
        "a3" * 8,
        "POST /validate",
        1.0,
        3.8,
        service="demo-webhook",
        kind="SERVER",
        UID="705ab4f5-6393-11e8-b7cc-42010a800002",
    ),
    span("b2" * 8, "b1" * 8, "policy check", 1.5, 2.0, service="demo-webhook"),
]

OVERLAPPING = [
    span("01" * 8, "", "reconcile", 0, 10, service="operator"),
    span(
        "02" * 8,
        "01" * 8,
        "GET /api/v1/namespaces/{:namespace}/pods",
        1,
        6,
        service="operator",
        kind="CLIENT",
    ),
    span(
        "03" * 8,
        "01" * 8,
        "GET /api/v1/namespaces/{:namespace}/configmaps",
        2,
        7,
        service="operator",
        kind="CLIENT",
    ),
    span("04" * 8, "01" * 8, "PATCH /apis/kopf.dev/v1/kopfexamples", 5, 9, service="operator", kind="CLIENT"),
]

TROUBLE = [
    span(
        "c1" * 8,
        "ff" * 8,  # its parent was never received
        "kopf.on.update kopfexamples.kopf.dev",
        0,
        20,
        service="operator",
        status="ERROR",
        message="handler failed",
        events=(("exception", {"exception.type": "kopf.TemporaryError"}, 19),),
        links=(("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", {"source": "annotation"}),),
    ),
    span(
        "c2" * 8,
        "c1" * 8,
        "PATCH /apis/kopf.dev/v1/namespaces/{:namespace}/kopfexamples/{:name}",
        2,
        25,
        service="operator",
        kind="CLIENT",
        status="OK",
    ),
    span("d1" * 8, "d2" * 8, "in a cycle", 5, 6, service="operator"),
    span("d2" * 8, "d1" * 8, "in the same cycle", 6, 7, service="operator"),
    span("e1" * 8, "c1" * 8, "linked back", 8, 9, service="operator", links=((TRACE, "c2" * 8, {}),)),
]

CASES: dict[str, tuple[list[ReceivedSpan], dict[str, Any]]] = {
    "joined": (JOINED, {}),
    "joined_verbose_ascii_80": (JOINED, {"verbose": True, "charset": ASCII, "width": 80}),
    "overlapping": (OVERLAPPING, {}),
    "trouble": (TROUBLE, {}),
    "deep": (
        [span(f"{i + 1:016x}", f"{i:016x}" if i else "", f"level {i}", i, 40 - i) for i in range(16)],
        {"width": 100},
    ),
    "hostile": (
        [span("01" * 8, "", "\x1b[2J\x1b]0;title\x07name\u202e", 0, 1, service="svc\r\n", kind="SERVER")],
        {"verbose": True},
    ),
    "instant": ([span("01" * 8, "", "zero length", 0, 0), span("02" * 8, "01" * 8, "also", 0, 0)], {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    spans, options = CASES[case]
    drawn = "\n".join(render_waterfall(spans, **options)) + "\n"
    path = GOLDEN / f"waterfall_{case}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(drawn, encoding="utf-8")
    assert drawn == path.read_text(encoding="utf-8")


def test_a_child_that_ends_after_its_parent_is_drawn_past_it() -> None:
    lines = render_waterfall(JOINED, width=160)
    [client] = [line for line in lines if line.lstrip().startswith("└ HTTP POST")]
    [webhook] = [line for line in lines if line.lstrip().startswith("└ POST /validate")]
    assert webhook.rindex("█") > client.rindex("█")  # faithfully later, not clipped to the parent


def test_every_line_fits_the_default_width() -> None:
    for spans, _ in CASES.values():
        assert all(display_width(line) <= 160 for line in render_waterfall(spans))


def test_rows_beyond_the_limit_are_counted() -> None:
    spans = [span(f"{i + 1:016x}", "", f"s{i}", i, i + 1) for i in range(30)]
    lines = render_waterfall(spans, max_rows=10)
    assert lines[-1] == "    … 20 more spans not drawn"


def test_printable_escapes_controls_and_keeps_text() -> None:
    assert printable("a\x1bb\x00c\x7f\x9b\u202e\u2028ü日本") == "a\\x1bb\\x00c\\x7f\\x9b\\u202e\\u2028ü日本"
    assert printable(("x", 1, True)) == "[x, 1, True]"


def test_fit_counts_wide_characters() -> None:
    assert fit("日本語テキスト", 7) == "日本語…"
    assert display_width(fit("日本語テキスト", 7)) <= 7
    assert fit("short", 10) == "short"


def test_trace_trees_handle_a_5000_deep_chain() -> None:
    chain = [span(f"{i + 1:016x}", f"{i:016x}" if i else "", f"n{i}", i, 10_000 - i) for i in range(5000)]
    [tree] = trace_trees(chain)
    node, depth = tree["roots"][0], 0
    while node["children"]:
        node, depth = node["children"][0], depth + 1
    assert depth == 4999


# --- properties ------------------------------------------------------------------------------------

_IDS = st.sampled_from(["", "01" * 8, "02" * 8, "03" * 8, "04" * 8, "05" * 8, "zz"])
_TIMES = st.integers(min_value=0, max_value=2**64 - 1)
_TEXT = st.text(max_size=40)
_ATTRIBUTES = st.dictionaries(
    _TEXT, st.one_of(_TEXT, st.integers(), st.booleans(), st.tuples(_TEXT)), max_size=3
)


@st.composite
def _spans(draw: st.DrawFn) -> ReceivedSpan:
    return ReceivedSpan(
        trace_id=draw(st.sampled_from([TRACE, "ab" * 16, ""])),
        span_id=draw(_IDS),
        parent_span_id=draw(_IDS),
        name=draw(_TEXT),
        kind=draw(st.sampled_from(["SERVER", "CLIENT", "INTERNAL", "7", "\x1b"])),
        start_time_unix_nano=draw(_TIMES),
        end_time_unix_nano=draw(_TIMES),
        attributes=draw(_ATTRIBUTES),
        resource=draw(st.dictionaries(st.just("service.name"), _TEXT)),
        scope="",
        status_code=draw(st.sampled_from(["UNSET", "OK", "ERROR"])),
        status_message=draw(_TEXT),
        links=tuple(draw(st.lists(st.tuples(st.sampled_from([TRACE, "x"]), _IDS, _ATTRIBUTES), max_size=2))),
        events=tuple(draw(st.lists(st.tuples(_TEXT, _ATTRIBUTES), max_size=2))),
        flags=1,
        trace_state="",
        event_times_unix_nano=tuple(draw(st.lists(_TIMES, max_size=2))),
    )


_UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spans=st.lists(_spans(), min_size=0, max_size=12),
    width=st.integers(min_value=20, max_value=300),
    verbose=st.booleans(),
    ascii_only=st.booleans(),
)
def test_any_span_set_is_drawn_within_the_width_without_control_characters(
    spans: list[ReceivedSpan], width: int, verbose: bool, ascii_only: bool
) -> None:
    lines = render_waterfall(spans, width=width, verbose=verbose, charset=ASCII if ascii_only else UNICODE)
    for line in lines:
        assert display_width(line) <= width, line
        assert "\n" not in line
        assert not any(unicodedata.category(char) in _UNSAFE for char in line), repr(line)
    # a header, an axis, and a row for every span (rows are capped at 400)
    assert len(lines) >= 2 + len(spans) if spans else lines == []
    trace_trees(spans)
