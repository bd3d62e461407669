"""A process that exports spans and then waits, trickles or exits (tests/test_export_sigterm.py).

``python -m subprocess_scripts.export_child ENDPOINT SPANS MODE [--shutdown-timeout S] [--app-handler]``:
it makes SPANS sampled spans, prints ``ready``, then waits for a signal (``wait``), keeps making a
span every 20 ms (``trickle``), or prints its monotonic clock and exits (``exit``).
``--app-handler`` installs an application SIGTERM handler that exits 0, before ``configure()``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType
from typing import Optional

from opentelemetry import trace

import k8s_otel


def _app_handler(signum: int, frame: Optional[FrameType]) -> None:
    sys.exit(0)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("endpoint")
    parser.add_argument("spans", type=int)
    parser.add_argument("mode", choices=["wait", "trickle", "exit"])
    parser.add_argument("--shutdown-timeout", type=float)
    parser.add_argument("--app-handler", action="store_true")
    args = parser.parse_args(argv)
    if args.app_handler:
        signal.signal(signal.SIGTERM, _app_handler)
    if args.shutdown_timeout is None:
        k8s_otel.configure(endpoint=args.endpoint, sampling_rate_per_million=1000000)
    else:
        k8s_otel.configure(
            endpoint=args.endpoint, sampling_rate_per_million=1000000, shutdown_timeout=args.shutdown_timeout
        )
    tracer = trace.get_tracer("t")
    for index in range(args.spans):
        with tracer.start_as_current_span(f"s{index}"):
            pass
    print("ready", flush=True)
    if args.mode == "wait":
        time.sleep(60)
    while args.mode == "trickle":
        with tracer.start_as_current_span("trickle"):
            pass
        time.sleep(0.02)
    print(time.monotonic(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
