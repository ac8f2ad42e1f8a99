"""PNG plots from a perf run's summary.json (matplotlib, no display needed).

- `<run>_latency.png`: throughput vs p50 / p99 latency, one point per concurrency (online)
- `<run>_breakdown.png`: per concurrency, each composing model's mean ms per request split
  into queue / compute input / compute infer / compute output (Triton's statistics)
- `<run>_cpu.png`: per concurrency, CPU core-ms per image stacked by process, against the
  model's own in-process best (the dashed line): what is left for everything else

    .venv/bin/python -m perf.plots perf/out/main/summary.json [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tricolor.client import STAT_PHASES  # noqa: E402

from .summary import Measurement, Summary, load  # noqa: E402

COLOURS = {
    "queue": "#d62728",
    "compute_input": "#ff7f0e",
    "compute_infer": "#1f77b4",
    "compute_output": "#2ca02c",
}


def latency_plot(name: str, rows: list[Measurement], path: Path) -> None:
    throughput = [row.throughput for row in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for column, style in (("p50 latency", "o-"), ("p99 latency", "s--")):
        ax.plot(
            throughput,
            [row.latency_ms(column) for row in rows],
            style,
            label=column.replace(" latency", ""),
        )
    for row, x in zip(rows, throughput, strict=True):
        ax.annotate(
            f"c={row.level:g}",
            (x, row.latency_ms("p99 latency")),
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


def breakdown_plot(name: str, rows: list[Measurement], path: Path) -> None:
    models = sorted({model for row in rows for model in row.models} - {"classify"})
    if not models:
        return
    fig, ax = plt.subplots(figsize=(max(6.4, 1.0 * len(rows) * len(models)), 4.2))
    width = 0.8 / len(models)
    ticks, labels = [], []
    for index, row in enumerate(rows):
        for offset, model in enumerate(models):
            entry = row.models.get(model)
            if entry is None:
                continue
            x = index + offset * width
            bottom = 0.0
            for phase in STAT_PHASES:
                value = entry.ms[phase]
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
            labels.append(f"{model[:4]}\nc={row.level:g}\nb={entry.mean_batch:.1f}")
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_ylabel("mean ms per request")
    ax.set_title(f"{name}: per-model breakdown (b = mean executed batch)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PROCESS_COLOURS = {
    "resnet50": "#1f77b4",
    "preprocess": "#ff7f0e",
    "postprocess": "#2ca02c",
    "tritonserver": "#9467bd",
    "perf_analyzer": "#7f7f7f",
}


def cpu_plot(name: str, rows: list[Measurement], path: Path, model_best_ms: float | None) -> None:
    rows = [row for row in rows if row.cpu_ms_per_image]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for index, row in enumerate(rows):
        bottom = 0.0
        for process, colour in PROCESS_COLOURS.items():
            value = row.cpu_ms_per_image.get(process, 0.0)
            ax.bar(
                index,
                value,
                0.6,
                bottom=bottom,
                color=colour,
                label=process if index == 0 and value > 0 else None,
            )
            bottom += value
    if model_best_ms:
        ax.axhline(model_best_ms, color="black", linestyle="--", linewidth=1)
        ax.text(
            0.01,
            model_best_ms,
            f"the model alone, at its best: {model_best_ms:.0f}",
            transform=ax.get_yaxis_transform(),  # x in axes fraction, y in data
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(
        range(len(rows)),
        [f"c={r.level:g}\n{r.throughput:.1f}/s" for r in rows],
        fontsize=8,
    )
    ax.set_ylabel("CPU core-ms per image")
    ax.set_title(f"{name}: where the cores go")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    summary = load(Summary, args.summary)
    out = args.out or args.summary.parent
    out.mkdir(parents=True, exist_ok=True)
    written = []
    limit = summary.model_limit()
    for name in summary.runs():
        rows = summary.measured(name)
        if not rows:
            continue
        if rows[0].mode == "concurrency":
            latency_plot(name, rows, out / f"{name}_latency.png")
            written.append(out / f"{name}_latency.png")
        if any(row.models for row in rows):
            breakdown_plot(name, rows, out / f"{name}_breakdown.png")
            written.append(out / f"{name}_breakdown.png")
        if rows[0].mode == "concurrency" and any(row.cpu_ms_per_image for row in rows):
            cpu_plot(name, rows, out / f"{name}_cpu.png", limit.core_ms if limit else None)
            written.append(out / f"{name}_cpu.png")
    for path in written:
        print(f"plot: {path}")


if __name__ == "__main__":
    main()
