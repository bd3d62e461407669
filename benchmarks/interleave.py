"""Run variants of a benchmark in turn, every round, so that load on a shared machine hits all alike.

``interleaved({"bare": f, "stock": g, "k8s_otel": h}, rounds)`` times one call of each variant per
round (the order rotated each round) and returns the medians and the per-round ratios
ours / stock and (ours - bare) / (stock - bare), with their interquartile ranges.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Interleaved:
    rounds: int
    medians: dict[str, float]  # seconds per call of the variant
    ratio: tuple[float, float, float]  # ours / stock: median, first and third quartile
    overhead: tuple[float, float, float]  # (ours - bare) / (stock - bare): same

    def row(self, group: str, per: int = 1, unit: str = "µs") -> str:
        """A RESULTS.md table row; ``per`` divides the medians (calls per variant call)."""
        scale = 1e6 / per
        m = self.medians
        return (
            f"| {group} | {self.rounds} | {m['bare'] * scale:.2f} {unit} | {m['stock'] * scale:.2f} {unit} | "
            f"{m['k8s_otel'] * scale:.2f} {unit} | {self.ratio[0]:.2f}x ({self.ratio[1]:.2f}-{self.ratio[2]:.2f}) | "
            f"{self.overhead[0]:.2f}x ({self.overhead[1]:.2f}-{self.overhead[2]:.2f}) |"
        )


def _spread(values: list[float]) -> tuple[float, float, float]:
    quartiles = statistics.quantiles(values, n=4)
    return statistics.median(values), quartiles[0], quartiles[2]


def interleaved(variants: dict[str, Callable[[], object]], rounds: int) -> Interleaved:
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        variants[name]()  # warm-up
    for index in range(rounds):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            started = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - started)
    ours, stock, bare = times["k8s_otel"], times["stock"], times["bare"]
    ratios = [o / s for o, s in zip(ours, stock)]
    overheads = [(o - b) / (s - b) for o, s, b in zip(ours, stock, bare) if s > b]
    return Interleaved(
        rounds=rounds,
        medians={name: statistics.median(values) for name, values in times.items()},
        ratio=_spread(ratios),
        overhead=_spread(overheads),
    )
