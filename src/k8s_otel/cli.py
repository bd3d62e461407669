"""The ``k8s-otel`` command (also ``python -m k8s_otel``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Optional, TextIO

from k8s_otel.receiver import OTLPReceiver, ReceivedSpan

__all__ = ["main", "render_trees"]

DEMO_EPILOG = """examples:
  k8s-otel demo                      # 20 requests, every one sampled, printed as trees
  k8s-otel demo --requests 200 --sampling-rate-per-million 100000
"""


def _write_subtree(children: Mapping[str, list[ReceivedSpan]], parent: str, depth: int, out: TextIO) -> None:
    for span in sorted(children.get(parent, ()), key=lambda s: s.start_time_unix_nano):
        attributes = " ".join(f"{k}={v}" for k, v in span.attributes.items())
        remote = (
            f" (parent {span.parent_span_id}, not exported)" if depth == 0 and span.parent_span_id else ""
        )
        out.write(
            f"{'  ' * (depth + 1)}{span.name} [{span.kind}] {span.duration_ms:.2f} ms{remote}"
            f"{'  ' + attributes if attributes else ''}\n"
        )
        _write_subtree(children, span.span_id, depth + 1, out)


def render_trees(spans: Sequence[ReceivedSpan], out: TextIO) -> int:
    """Print each trace as an indented tree (parents first, children by start time); return the count."""
    by_trace: dict[str, list[ReceivedSpan]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    for trace_id, members in sorted(
        by_trace.items(), key=lambda item: min(s.start_time_unix_nano for s in item[1])
    ):
        ids = {s.span_id for s in members}
        children: dict[str, list[ReceivedSpan]] = defaultdict(list)
        for span in members:
            children[span.parent_span_id if span.parent_span_id in ids else ""].append(span)
        out.write(f"trace {trace_id}\n")
        _write_subtree(children, "", 0, out)
    return len(by_trace)


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from opentelemetry.trace import SpanKind

    import k8s_otel

    with OTLPReceiver() as receiver:
        handle = k8s_otel.configure(
            endpoint=receiver.endpoint,
            sampling_rate_per_million=args.sampling_rate_per_million,
            service_name="k8s-otel-demo",
            install=False,
        )
        tracer = handle.tracer_provider.get_tracer("k8s.io/component-base/tracing")
        started = time.monotonic()
        sampled = 0
        for index in range(args.requests):
            with tracer.start_as_current_span(
                "Call validating webhook",
                kind=SpanKind.INTERNAL,
                attributes={
                    "configuration": "demo-policy",
                    "webhook": "demo.k8s-otel.io",
                    "resource": "apps/v1, Resource=deployments",
                    "subresource": "",
                    "operation": "CREATE",
                    "UID": f"00000000-0000-0000-0000-{index:012d}",
                },
            ) as span:
                sampled += span.is_recording()
        handle.shutdown(timeout=5)
        elapsed = time.monotonic() - started
        spans = receiver.spans()
    out.write(f"sampler: {handle.sampler_description}\n\n")
    traces = render_trees(spans, out)
    out.write(
        f"\nrequests: {args.requests}, sampled: {sampled}, traces received: {traces}, "
        f"spans exported: {len(spans)}, elapsed: {elapsed * 1000:.0f} ms\n"
    )
    return 0 if len(spans) == sampled else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="k8s-otel", description="OpenTelemetry for Python Kubernetes components."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="run kube-apiserver-style traffic through a local OTLP receiver and print the traces",
        epilog=DEMO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--requests", type=int, default=20, help="how many requests to send (default 20)")
    demo.add_argument(
        "--sampling-rate-per-million",
        type=int,
        default=1_000_000,
        help="samplingRatePerMillion for the simulated apiserver (default 1000000: every request)",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None, out: TextIO = sys.stdout) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return _demo(args, out)
    return 2  # pragma: no cover - argparse refuses unknown commands
