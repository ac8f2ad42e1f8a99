"""PNG plots from a perf run's summary.json (matplotlib, no display needed).

- `<run>_latency.png`: throughput vs p50 / p99 latency, one point per concurrency (online)
- `<run>_breakdown.png`: per concurrency, each composing model's mean ms per request split
  into queue / compute input / compute infer / compute output (Triton's statistics)

    .venv/bin/python perf/plots.py perf/out/main/summary.json [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tricolor.client import STAT_PHASES  # noqa: E402

COLOURS = {
    "queue": "#d62728",
    "compute_input": "#ff7f0e",
    "compute_infer": "#1f77b4",
    "compute_output": "#2ca02c",
}


def by_run(summary: dict) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {}
    for row in summary.get("sweeps", []):
        if "error" not in row:
            runs.setdefault(row["run"], []).append(row)
    return runs


def latency_plot(name: str, rows: list[dict], path: Path) -> None:
    rows = sorted(rows, key=lambda row: row["level"])
    throughput = [row["row"]["Inferences/Second"] * 1 for row in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for column, style in (("p50 latency", "o-"), ("p99 latency", "s--")):
        ax.plot(
            throughput,
            [row["row"][column] / 1000 for row in rows],
            style,
            label=column.replace(" latency", ""),
        )
    for row, x in zip(rows, throughput, strict=True):
        ax.annotate(
            f"c={row['level']:g}",
            (x, row["row"]["p99 latency"] / 1000),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    ax.set_xlabel("throughput (inferences/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{name}: throughput vs latency")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def breakdown_plot(name: str, rows: list[dict], path: Path) -> None:
    rows = sorted(rows, key=lambda row: row["level"])
    models = sorted({model for row in rows for model in row["models"]} - {"classify"})
    if not models:
        return
    fig, ax = plt.subplots(figsize=(max(6.4, 1.0 * len(rows) * len(models)), 4.2))
    width = 0.8 / len(models)
    ticks, labels = [], []
    for index, row in enumerate(rows):
        for offset, model in enumerate(models):
            entry = row["models"].get(model)
            if entry is None:
                continue
            x = index + offset * width
            bottom = 0.0
            for phase in STAT_PHASES:
                value = entry[f"{phase}_ms"]
                ax.bar(
                    x,
                    value,
                    width * 0.9,
                    bottom=bottom,
                    color=COLOURS[phase],
                    label=phase if index == 0 and offset == 0 else None,
                )
                bottom += value
            ticks.append(x)
            labels.append(f"{model[:4]}\nc={row['level']:g}\nb={entry['mean_batch']:.1f}")
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_ylabel("mean ms per request")
    ax.set_title(f"{name}: per-model breakdown (b = mean executed batch)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    summary = json.loads(args.summary.read_text())
    out = args.out or args.summary.parent
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in by_run(summary).items():
        if rows[0]["mode"] == "concurrency":
            latency_plot(name, rows, out / f"{name}_latency.png")
            written.append(out / f"{name}_latency.png")
        if any(row["models"] for row in rows):
            breakdown_plot(name, rows, out / f"{name}_breakdown.png")
            written.append(out / f"{name}_breakdown.png")
    for path in written:
        print(f"plot: {path}")


if __name__ == "__main__":
    main()
