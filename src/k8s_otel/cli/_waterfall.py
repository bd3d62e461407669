"""Drawing traces for people: spans grouped into trees, shared by ``demo`` and ``receive``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from k8s_otel.cli.receiver import ReceivedSpan

__all__ = ["render_trees", "span_as_dict", "trace_trees"]


def trace_trees(spans: Sequence[ReceivedSpan]) -> list[dict[str, Any]]:
    """Spans as trees, one per trace (oldest first): ``{"trace_id", "roots": [node…]}``.

    A node is ``span_as_dict(span)`` plus ``"children"``, ordered by start time. A span whose
    parent was not received is a root of its trace.
    """
    by_trace: dict[str, list[ReceivedSpan]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)

    def node(span: ReceivedSpan, children: Mapping[str, list[ReceivedSpan]]) -> dict[str, Any]:
        return {**span_as_dict(span), "children": [node(c, children) for c in children.get(span.span_id, ())]}

    trees = []
    for trace_id, members in sorted(
        by_trace.items(), key=lambda item: min(s.start_time_unix_nano for s in item[1])
    ):
        ids = {s.span_id for s in members}
        children: dict[str, list[ReceivedSpan]] = defaultdict(list)
        for span in sorted(members, key=lambda s: s.start_time_unix_nano):
            children[span.parent_span_id if span.parent_span_id in ids else ""].append(span)
        trees.append({"trace_id": trace_id, "roots": [node(root, children) for root in children[""]]})
    return trees


def _write_node(node: Mapping[str, Any], depth: int, out: TextIO) -> None:
    attributes = " ".join(f"{k}={v}" for k, v in node["attributes"].items())
    service = node["resource"].get("service.name", "")
    duration = (node["end_time_unix_nano"] - node["start_time_unix_nano"]) / 1e6
    remote = (
        f" (parent {node['parent_span_id']}, not received)" if depth == 0 and node["parent_span_id"] else ""
    )
    out.write(
        f"{'  ' * (depth + 1)}{node['name']} [{node['kind']}] {service} {duration:.2f} ms{remote}"
        f"{'  ' + attributes if attributes else ''}\n"
    )
    for child in node["children"]:
        _write_node(child, depth + 1, out)


def render_trees(spans: Sequence[ReceivedSpan], out: TextIO) -> int:
    """Print each trace as an indented tree (parents first, children by start time); return the count."""
    trees = trace_trees(spans)
    for tree in trees:
        out.write(f"trace {tree['trace_id']}\n")
        for root in tree["roots"]:
            _write_node(root, 0, out)
    return len(trees)


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
