"""Drawing traces for people, shared by ``demo`` and ``receive``: waterfalls on one time scale.

Every span is a row: its place in the tree, service, kind, a time bar on the trace's shared scale,
duration and status; beneath it, in short, its errors, events and links. Nothing here trusts the
spans: names and values are escaped (no terminal control sequence reaches the screen), lines never
exceed the width, and the tree is built without recursion, so missing parents (orphans), parent
cycles, children that end after their parent and 5,000-deep chains are all drawn, never fatal.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, TextIO

from k8s_otel._attributes import EXCEPTION_EVENT, EXCEPTION_TYPE, SERVICE_NAME
from k8s_otel.cli._receiver import ReceivedSpan

__all__ = [
    "DEFAULT_WIDTH",
    "Charset",
    "display_width",
    "fit",
    "group_by_trace",
    "printable",
    "render_traces",
    "render_waterfall",
    "span_as_dict",
    "trace_trees",
]

#: No line is wider than this unless the caller asks for more.
DEFAULT_WIDTH = 160
_MAX_INDENT_LEVELS = 12  # deeper spans show their depth as a number instead of more indentation
_MAX_ROWS = 400  # rows per trace; the rest is counted, not drawn
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


@dataclass(frozen=True)
class Charset:
    """The glyphs of a drawing: Unicode blocks, or plain ASCII for terminals that cannot show them."""

    bar: str
    tick: str
    empty: str
    edge: str
    branch: str
    ellipsis: str
    link: str
    event: str

    @staticmethod
    def for_encoding(encoding: Optional[str]) -> Charset:
        """Unicode when the stream can encode it, else ASCII."""
        try:
            "█▏·│└…↪•".encode(encoding or "ascii")
        except (LookupError, UnicodeEncodeError):
            return ASCII
        return UNICODE


UNICODE = Charset(bar="█", tick="▏", empty="·", edge="│", branch="└ ", ellipsis="…", link="↪", event="•")
ASCII = Charset(bar="#", tick="|", empty=".", edge="|", branch="`-", ellipsis="~", link="->", event="*")


# --- safe text -----------------------------------------------------------------------------------


def printable(value: object) -> str:
    """``value`` as text with every control or format character escaped (``\\x1b``, ``\\u202e``).

    Span names and attribute values come from whoever sent the spans: an escape sequence must reach
    the screen as text, never as a command to the terminal.
    """
    text = value if isinstance(value, str) else _plain(value)
    if text.isprintable():
        return text
    out = []
    for char in text:
        if unicodedata.category(char) in _ESCAPED_CATEGORIES:
            code = ord(char)
            out.append(
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
            )
        else:
            out.append(char)
    return "".join(out)


def _plain(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    return str(value)


def _char_width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal (wide East Asian characters take two)."""
    if text.isascii():
        return len(text)
    return sum(_char_width(c) for c in text)


def fit(text: str, width: int, ellipsis: str = "…") -> str:
    """``text`` cut to at most ``width`` columns, marked with ``ellipsis`` when cut."""
    if display_width(text) <= width:
        return text
    budget = max(width - display_width(ellipsis), 0)
    used = 0
    kept = []
    for char in text:
        w = _char_width(char)
        if used + w > budget:
            break
        kept.append(char)
        used += w
    return "".join(kept) + (ellipsis if width >= display_width(ellipsis) else "")


def _pad(text: str, width: int, ellipsis: str) -> str:
    cut = fit(text, width, ellipsis)
    return cut + " " * (width - display_width(cut))


# --- trees ---------------------------------------------------------------------------------------


def group_by_trace(spans: Iterable[ReceivedSpan]) -> list[list[ReceivedSpan]]:
    """Spans by trace, traces in order of their first start."""
    by_trace: dict[str, list[ReceivedSpan]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    return sorted(by_trace.values(), key=lambda members: min(s.start_time_unix_nano for s in members))


@dataclass(frozen=True)
class _Row:
    span: ReceivedSpan
    depth: int
    #: Why a span without a received parent is at the top: "" (a true root), "orphan", "cycle".
    detached: str


def _rows(members: Sequence[ReceivedSpan]) -> list[_Row]:
    """Depth-first order (children by start time), iteratively; spans in parent cycles come last."""
    order = sorted(range(len(members)), key=lambda i: (members[i].start_time_unix_nano, i))
    ids = {members[i].span_id for i in order}
    children: dict[str, list[int]] = defaultdict(list)
    tops: list[tuple[int, str]] = []
    for i in order:
        span = members[i]
        parent = span.parent_span_id
        if parent and parent in ids and parent != span.span_id:
            children[parent].append(i)
        else:
            tops.append((i, "orphan" if parent else ""))
    rows: list[_Row] = []
    seen: set[int] = set()

    def walk(start: int, detached: str) -> None:
        stack = [(start, 0, detached)]
        while stack:
            index, depth, why = stack.pop()
            if index in seen:
                continue
            seen.add(index)
            rows.append(_Row(members[index], depth, why))
            for child in reversed(children.get(members[index].span_id, ())):
                if child not in seen:
                    stack.append((child, depth + 1, ""))

    for index, why in tops:
        walk(index, why)
    for index in order:  # only spans whose ancestors form a cycle are still unseen
        if index not in seen:
            walk(index, "cycle")
    return rows


def trace_trees(spans: Sequence[ReceivedSpan]) -> list[dict[str, Any]]:
    """Spans as trees, one per trace (oldest first): ``{"trace_id", "roots": [node…]}``.

    A node is ``span_as_dict(span)`` plus ``"children"``, ordered by start time. A span whose
    parent was not received is a root of its trace. Built without recursion.
    """
    trees = []
    for members in group_by_trace(spans):
        roots: list[dict[str, Any]] = []
        path: list[dict[str, Any]] = []
        for row in _rows(members):
            node = {**span_as_dict(row.span), "children": []}
            del path[row.depth :]
            (path[-1]["children"] if path else roots).append(node)
            path.append(node)
        trees.append({"trace_id": members[0].trace_id, "roots": roots})
    return trees


def span_as_dict(span: ReceivedSpan) -> dict[str, Any]:
    """One span as plain JSON-able data (what ``receive --json`` prints, one per line)."""
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "name": span.name,
        "kind": span.kind,
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "status": {"code": span.status_code, "message": span.status_message},
        "attributes": span.attributes,
        "resource": span.resource,
        "scope": span.scope,
        "links": [{"trace_id": t, "span_id": s, "attributes": a} for t, s, a in span.links],
        "events": [{"name": n, "attributes": a} for n, a in span.events],
    }


# --- the waterfall -------------------------------------------------------------------------------


def _ms(nanoseconds: float) -> str:
    ms = nanoseconds / 1e6
    if ms < 100:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s" if ms < 100_000 else f"{ms / 1000:.0f} s"


def _end(span: ReceivedSpan) -> int:
    return max(span.end_time_unix_nano, span.start_time_unix_nano)


def _short(identifier: str, ellipsis: str = "…") -> str:
    return printable(identifier[:8]) + (ellipsis if len(identifier) > 8 else "")


def _attributes_text(attributes: Mapping[str, Any]) -> str:
    return " ".join(f"{printable(k)}={printable(v)}" for k, v in attributes.items())


def render_waterfall(
    members: Sequence[ReceivedSpan],
    *,
    width: int = DEFAULT_WIDTH,
    verbose: bool = False,
    charset: Charset = UNICODE,
    max_rows: int = _MAX_ROWS,
    title: Optional[str] = None,
) -> list[str]:
    """One trace as lines of at most ``width`` columns: a header, a time axis, a row per span.

    Under each span: its error (status message, exception types), events with their offset, and
    links (to a span drawn here by name, else by id); with ``verbose``, every attribute.
    """
    width = max(width, 20)
    c = charset
    if not members:
        return []
    rows = _rows(members)
    start = min(s.start_time_unix_nano for s in members)
    end = max(_end(s) for s in members)
    span_total = max(end - start, 0)
    names_by_id = {s.span_id: s.name for s in members}
    services = sorted({printable(s.resource.get(SERVICE_NAME, "?")) for s in members})
    trace_id = printable(members[0].trace_id)
    head = title or f"trace {trace_id}"
    errors = sum(1 for s in members if s.status_code == "ERROR")
    lines = [
        fit(
            f"{head}  {len(members)} span{'s' * (len(members) != 1)}, "
            f"{_ms(span_total)}, {'error' + 's' * (errors != 1) + ': ' + str(errors) + ', ' if errors else ''}"
            f"services: {', '.join(services)}",
            width,
            c.ellipsis,
        )
    ]

    shown = rows[:max_rows]
    names = [printable(row.span.name) for row in shown]
    service_width = min(
        max(display_width(printable(r.span.resource.get(SERVICE_NAME, "?"))) for r in shown), 20
    )
    kind_width = 8
    duration_width = 9
    status_width = 5
    fixed = service_width + kind_width + duration_width + status_width + 7  # separators and bar edges
    wanted = max(
        display_width(name) + 2 * min(row.depth, _MAX_INDENT_LEVELS) for row, name in zip(shown, names)
    )
    label_width = min(wanted, max(int((width - fixed) * 0.4), 8))
    # Indentation never takes more than half the label: deeper spans show their depth as a number.
    max_levels = max(min(_MAX_INDENT_LEVELS, label_width // 4), 1)
    labels = []
    for row, name in zip(shown, names):
        levels = min(row.depth, max_levels)
        prefix = "  " * max(levels - 1, 0) + (c.branch if levels else "")
        if row.depth > max_levels:
            prefix += f"[{row.depth}] "
        labels.append(prefix + name)
    bar_width = max(width - fixed - label_width, 4)

    def column(t: int) -> float:
        return 0.0 if span_total == 0 else (t - start) / span_total * bar_width

    axis_left = f"0 {' ' * max(bar_width - len(_ms(span_total)) - 2, 0)}{_ms(span_total)}"
    lines.append(
        fit(
            " " * (label_width + service_width + kind_width + 3) + " " + axis_left[:bar_width],
            width,
            c.ellipsis,
        )
    )
    for row, label in zip(shown, labels):
        span = row.span
        indent = "  " * min(row.depth, max_levels) + "    "
        first = min(int(column(span.start_time_unix_nano)), bar_width - 1)
        last = max(int(-(-column(_end(span)) // 1)), first + 1)
        last = min(last, bar_width)
        bar = c.empty * first + c.bar * (last - first) + c.empty * (bar_width - last)
        status = "ERROR" if span.status_code == "ERROR" else ("ok" if span.status_code == "OK" else "")
        line = (
            f"{_pad(label, label_width, c.ellipsis)} "
            f"{_pad(printable(span.resource.get(SERVICE_NAME, '?')), service_width, c.ellipsis)} "
            f"{_pad(printable(span.kind), kind_width, c.ellipsis)} "
            f"{c.edge}{bar}{c.edge} {_ms(_end(span) - span.start_time_unix_nano):>{duration_width}} {status}"
        )
        lines.append(fit(line.rstrip(), width, c.ellipsis))
        details: list[str] = []
        if row.detached == "orphan":
            details.append(f"parent {_short(span.parent_span_id, c.ellipsis)} not received")
        elif row.detached == "cycle":
            details.append(f"parent {_short(span.parent_span_id, c.ellipsis)} is in a parent cycle")
        if span.status_code == "ERROR" and span.status_message:
            details.append(f"error: {printable(span.status_message)}")
        for index, (name, attributes) in enumerate(span.events):
            at = span.event_times_unix_nano[index] if index < len(span.event_times_unix_nano) else 0
            offset = f" +{_ms(at - span.start_time_unix_nano)}" if at >= span.start_time_unix_nano > 0 else ""
            what = printable(name)
            if name == EXCEPTION_EVENT and EXCEPTION_TYPE in attributes:
                what += f" {printable(attributes[EXCEPTION_TYPE])}"
            details.append(
                f"{c.event} {what}{offset}" + (f"  {_attributes_text(attributes)}" if verbose else "")
            )
        for link_trace, link_span, attributes in span.links:
            if link_trace == span.trace_id and link_span in names_by_id:
                target = f"{printable(names_by_id[link_span])} (span {_short(link_span, c.ellipsis)} in this trace)"
            else:
                target = f"trace {printable(link_trace)} span {printable(link_span)}"
            extra = f"  {_attributes_text(attributes)}" if attributes else ""
            details.append(f"{c.link} link to {target}{extra}")
        if verbose and span.attributes:
            details.extend(f"{printable(k)} = {printable(v)}" for k, v in span.attributes.items())
        lines.extend(fit((indent + detail).rstrip(), width, c.ellipsis) for detail in details)
    if len(rows) > len(shown):
        lines.append(
            fit(f"    {c.ellipsis} {len(rows) - len(shown)} more spans not drawn", width, c.ellipsis)
        )
    return lines


def render_traces(
    spans: Iterable[ReceivedSpan],
    out: TextIO,
    *,
    width: int = DEFAULT_WIDTH,
    verbose: bool = False,
    charset: Optional[Charset] = None,
) -> int:
    """Write each trace in ``spans`` as a waterfall, a blank line between; return the count."""
    glyphs = charset or Charset.for_encoding(getattr(out, "encoding", None))
    traces = group_by_trace(spans)
    for index, members in enumerate(traces):
        if index:
            out.write("\n")
        out.write("\n".join(render_waterfall(members, width=width, verbose=verbose, charset=glyphs)) + "\n")
    return len(traces)
