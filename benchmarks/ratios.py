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
    print("| group | k8s_otel median | stock median | ratio |")
    print("| --- | --- | --- | --- |")
    for group, medians in sorted(groups.items()):
        ours, stock = medians.get("k8s_otel"), medians.get("stock")
        if ours is None or stock is None:
            for name, median in sorted(medians.items()):
                print(f"| {group} ({name}) | {median * 1e6:.2f} µs | | |")
            continue
        print(f"| {group} | {ours * 1e6:.2f} µs | {stock * 1e6:.2f} µs | {ours / stock:.2f}x |")


if __name__ == "__main__":
    main(sys.argv[1])
