"""A markdown table comparing experiment runs (`perf.run --label X`), for perf/EXPERIMENTS.md.

.venv/bin/python -m perf.compare exp-A-baseline exp-B-r50-2x1 [--run classify_online]
"""

from __future__ import annotations

import argparse

from .common import OUT_DIR
from .summary import Summary, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", nargs="+")
    parser.add_argument("--run", default="classify_online")
    args = parser.parse_args()
    print("| experiment | overrides | concurrency | infer/s | p50 ms | p99 ms | load avg |")
    print("|---|---|---|---|---|---|---|")
    for label in args.labels:
        summary = load(Summary, OUT_DIR / label / "summary.json")
        overrides = ", ".join(f"`{o}`" for o in summary.overrides[1:]) or "as shipped"
        for point in summary.runs().get(args.run, []):
            if point.result is None:
                print(f"| {label} | {overrides} | {point.level:g} | failed | | | |")
                continue
            result = point.result
            print(
                f"| {label} | {overrides} | {point.level:g} | {result.throughput:.2f} "
                f"| {result.latency_ms('p50 latency'):.1f} "
                f"| {result.latency_ms('p99 latency'):.1f} | {point.load} |"
            )


if __name__ == "__main__":
    main()
