"""Print k8s_otel/stock median ratios per benchmark group from a pytest-benchmark JSON file.

Usage: python benchmarks/ratios.py .benchmarks/results.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    with open(path) as file:
        data = json.load(file)
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        implementation = (
            bench["params"].get("implementation", bench["name"]) if bench.get("params") else bench["name"]
        )
        groups[bench["group"] or bench["name"]][implementation] = bench["stats"]["median"]
    print(
        "| group | bare | stock | k8s_otel | ratio (ours / stock) | overhead ratio ((ours - bare) / (stock - bare)) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for group, medians in sorted(groups.items()):
        ours, stock, bare = medians.get("k8s_otel"), medians.get("stock"), medians.get("bare")
        if ours is None or stock is None:
            for name, median in sorted(medians.items()):
                print(f"| {group} ({name}) | | | {median * 1e6:.1f} µs | | |")
            continue
        overhead = f"{(ours - bare) / (stock - bare):.2f}x" if bare is not None and stock > bare else ""
        shown_bare = f"{bare * 1e6:.1f} µs" if bare is not None else ""
        print(
            f"| {group} | {shown_bare} | {stock * 1e6:.1f} µs | {ours * 1e6:.1f} µs | {ours / stock:.2f}x | {overhead} |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
