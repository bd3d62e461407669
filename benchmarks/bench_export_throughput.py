"""Sustained spans/s with 0 drops, and CPU per exported span: ours against the stock pipeline.

Not a pytest benchmark (it paces a producer for seconds at a time): run it as a script.

    python benchmarks/bench_export_throughput.py [--rounds 3] [--seconds 3] [--flapping]

For each offered rate, ours and stock run one after the other (interleaved, same receiver, which
runs in its own process): a producer thread makes webhook-sized spans at that rate for ``seconds``,
then everything is flushed and counted at the receiver. A rate is sustained when every span
arrived. CPU is this process's (producer + processor + exporter) and the export worker thread's
alone, per span received. ``--flapping``: the receiver refuses every other Export with
RESOURCE_EXHAUSTED (retryable), so every batch needs a retry.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).parent))
from _export_common import ATTRIBUTES, Receiver, our_pipeline, stock_pipeline

RATES = (2000, 4000, 8000, 12000, 16000, 24000)
_TICK = os.sysconf("SC_CLK_TCK")


def worker_cpu() -> float:
    """CPU seconds of the batch processor's worker thread(s), from /proc."""
    total = 0.0
    for thread in threading.enumerate():
        if thread.name.startswith("OtelBatchSpan") and thread.native_id is not None:
            try:
                with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def produce(tracer: Any, rate: int, seconds: float) -> int:
    """Make spans at ``rate`` per second for ``seconds``; return how many were made."""
    tick = 0.01
    per_tick = max(1, rate // 100)
    made = 0
    start = time.perf_counter()
    next_tick = start
    while True:
        now = time.perf_counter()
        if now - start >= seconds:
            return made
        for _ in range(per_tick):
            with tracer.start_as_current_span("validate", attributes=ATTRIBUTES):
                pass
        made += per_tick
        next_tick += tick
        delay = next_tick - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def run_level(name: str, receiver: Receiver, rate: int, seconds: float) -> dict[str, float]:
    build: Callable[[str], tuple[Any, Any]] = our_pipeline if name == "k8s_otel" else stock_pipeline
    provider, flusher = build(receiver.endpoint)
    tracer = provider.get_tracer("bench")
    before = receiver.count()
    cpu, worker = time.process_time(), worker_cpu()
    started = time.perf_counter()
    made = produce(tracer, rate, seconds)
    produced_in = time.perf_counter() - started
    flusher.force_flush(60)
    cpu, worker = time.process_time() - cpu, worker_cpu() - worker
    received = receiver.count() - before
    if hasattr(flusher, "statistics"):
        stats = flusher.statistics()
        assert stats.exported == received or stats.exported + stats.failed <= made, stats
        flusher.shutdown(5)
    else:
        flusher.shutdown()
        provider.shutdown()
    return {
        "made": made,
        "achieved": made / produced_in,
        "received": received,
        "lost": made - received,
        "cpu_us": cpu / max(received, 1) * 1e6,
        "worker_us": worker / max(received, 1) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--flapping", action="store_true")
    parser.add_argument("--rates", default=",".join(map(str, RATES)))
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    receiver = Receiver(flapping=args.flapping)
    results: dict[str, dict[int, list[dict[str, float]]]] = {"k8s_otel": {}, "stock": {}}
    try:
        for round_ in range(args.rounds):
            for rate in rates:
                order = ("stock", "k8s_otel") if round_ % 2 else ("k8s_otel", "stock")
                for name in order:
                    level = run_level(name, receiver, rate, args.seconds)
                    results[name].setdefault(rate, []).append(level)
                    print(
                        f"round {round_} {name:8} rate {rate:6}: made {level['made']:.0f} "
                        f"({level['achieved']:.0f}/s) lost {level['lost']:.0f} "
                        f"cpu {level['cpu_us']:.1f} us/span worker {level['worker_us']:.1f} us/span",
                        flush=True,
                    )
    finally:
        receiver.stop()
    print()
    print(
        "| offered spans/s | pipeline | runs with 0 lost | achieved spans/s | CPU µs/exported span (median) | worker thread µs/span (median) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for rate in rates:
        for name in ("stock", "k8s_otel"):
            runs = results[name][rate]
            clean = sum(1 for r in runs if r["lost"] == 0)
            print(
                f"| {rate} | {name} | {clean}/{len(runs)} | {statistics.median(r['achieved'] for r in runs):.0f} "
                f"| {statistics.median(r['cpu_us'] for r in runs):.1f} | {statistics.median(r['worker_us'] for r in runs):.1f} |"
            )


if __name__ == "__main__":
    main()
