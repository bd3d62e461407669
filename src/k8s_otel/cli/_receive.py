"""``k8s-otel receive``: a development OTLP receiver (gRPC and HTTP) that shows whole traces.

It keeps no request: spans are grouped by trace (``TraceViewer``), shown once the trace has been
quiet for ``--settle`` seconds or at exit, and then dropped.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import threading
from typing import TextIO

from k8s_otel.cli._common import UserError, as_json
from k8s_otel.cli._receiver import OTLPReceiver, ReceivedRequest, ReceivedSpan
from k8s_otel.cli._viewer import SpanFilter, TraceViewer, parse_filter
from k8s_otel.cli._waterfall import Charset, render_waterfall, span_as_dict

__all__ = ["is_loopback", "run_receive"]

MAX_SETTLE = 3600.0


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def _wait_for_stop() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _span_filter(args: argparse.Namespace) -> SpanFilter:
    pairs = []
    for text in args.filter or ():
        try:
            pairs.append(parse_filter(text))
        except ValueError as error:
            raise UserError(f"--filter: {error}") from None
    return SpanFilter(uid=args.uid, service=args.service, attributes=tuple(pairs))


def run_receive(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not 0 < args.settle <= MAX_SETTLE:
        raise UserError(f"--settle must be more than 0 and at most {MAX_SETTLE:g} seconds")
    span_filter = _span_filter(args)
    charset = Charset.for_encoding(getattr(out, "encoding", None))
    write_lock = threading.Lock()

    def show(trace_id: str, spans: list[ReceivedSpan], continued: bool) -> None:
        if args.json:
            text = "".join(as_json(span_as_dict(span)) + "\n" for span in spans)
        else:
            title = f"trace {trace_id}" + (" (continued)" if continued else "")
            lines = render_waterfall(
                spans, width=args.width, verbose=args.verbose, charset=charset, title=title
            )
            text = "\n".join(lines) + "\n\n"
        with write_lock:
            out.write(text)
            out.flush()

    viewer = TraceViewer(show, settle=args.settle, span_filter=span_filter)

    def on_request(request: ReceivedRequest) -> None:
        viewer.add(request.spans())

    http_port = args.http_port
    if http_port is None:
        http_port = 0 if args.port == 0 else 4318
    receiver = OTLPReceiver(
        host=args.host,
        port=args.port,
        on_request=on_request,
        keep=0,
        http_port=None if args.no_http else http_port,
    )
    if not is_loopback(args.host):
        err.write(
            f"k8s-otel receive: warning: listening on {args.host}, which is not a loopback address: "
            "anyone who can reach it can send spans, and there is no TLS and no authentication\n"
        )
    try:
        receiver.start()
    except (OSError, RuntimeError) as error:
        ports = f"{args.port}" + ("" if args.no_http else f" and {http_port}")
        detail = getattr(error, "strerror", None) or error
        raise UserError(f"cannot listen on {args.host}:{ports}: {detail}") from None
    where = f"OTLP/gRPC on {receiver.endpoint}"
    if not args.no_http:
        where += f" and OTLP/HTTP on {receiver.http_endpoint}"
    err.write(
        f"k8s-otel receive: listening for {where} (a development receiver, not a collector; "
        f"a trace is shown once quiet for {args.settle:g} s; Ctrl-C to stop)\n"
    )
    err.flush()
    viewer.start()
    try:
        _wait_for_stop()
    finally:
        receiver.stop(grace=1)
        viewer.stop()
    return 0


def add_arguments(receive: argparse.ArgumentParser) -> None:
    from k8s_otel.cli._viewer import DEFAULT_SETTLE

    receive.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    receive.add_argument(
        "--port", type=port_number, default=4317, help="OTLP/gRPC port; 0 picks one (default 4317)"
    )
    receive.add_argument(
        "--http-port",
        type=port_number,
        default=None,
        help="OTLP/HTTP port (POST /v1/traces, protobuf or JSON); 0 picks one "
        "(default 4318, or 0 when --port is 0)",
    )
    receive.add_argument("--no-http", action="store_true", help="serve OTLP/gRPC only")
    receive.add_argument(
        "--settle",
        type=float,
        default=DEFAULT_SETTLE,
        help=f"show a trace once no span of it has arrived for this many seconds (default {DEFAULT_SETTLE:g})",
    )
    receive.add_argument(
        "--uid", help="only traces with a span whose UID attribute is this (an admission UID)"
    )
    receive.add_argument("--service", help="only traces with a span of this service.name")
    receive.add_argument(
        "--filter",
        action="append",
        metavar="KEY=VALUE",
        help="only traces with a span (or resource) attribute KEY equal to VALUE; repeatable, all must hold",
    )
    receive.add_argument("--json", action="store_true", help="print one JSON object per span")
    receive.add_argument("--verbose", action="store_true", help="show every attribute under its span")
    receive.add_argument("--width", type=int, default=160, help="widest line to print (default 160)")


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0 to 65535)")
    return value
