"""A markdown table comparing experiment runs (`run.py --label X`), for perf/EXPERIMENTS.md.

.venv/bin/python perf/compare.py exp-A-baseline exp-B-r50-2x1 [--run classify_online]
"""

from __future__ import annotations

import argparse
import json

from common import OUT_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", nargs="+")
    parser.add_argument("--run", default="classify_online")
    args = parser.parse_args()
    print("| experiment | overrides | concurrency | infer/s | p50 ms | p99 ms | load avg |")
    print("|---|---|---|---|---|---|---|")
    for label in args.labels:
        summary = json.loads((OUT_DIR / label / "summary.json").read_text())
        overrides = ", ".join(f"`{o}`" for o in summary["overrides"][1:]) or "as shipped"
        for row in summary["sweeps"]:
            if row["run"] != args.run:
                continue
            if "error" in row:
                print(f"| {label} | {overrides} | {row['level']:g} | failed | | | |")
                continue
            values = row["row"]
            print(
                f"| {label} | {overrides} | {row['level']:g} | {values['Inferences/Second']:.2f} "
                f"| {values['p50 latency'] / 1000:.1f} | {values['p99 latency'] / 1000:.1f} "
                f"| {row['load']} |"
            )


if __name__ == "__main__":
    main()
