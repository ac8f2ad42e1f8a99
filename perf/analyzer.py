"""One perf_analyzer measurement: run it (`subprocess.run`, `-f` CSV), parse its CSV, take the
per-model queue/compute breakdown from Triton's statistics API around it, and the CPU time each
process spent in it (tritonserver, each model's stubs, perf_analyzer itself) from /proc.

    .venv/bin/python -m perf.analyzer --grpc-url localhost:8001 --http-url localhost:8000 \\
        --input-data perf/out/inputs/classify.json --out perf/out/one   # against a running server

writes perf/out/one/summary.json with that one level, which perf.plots can draw.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import resource
import time
from collections import Counter
from pathlib import Path

from tricolor.client import STAT_PHASES, ModelTimes, TricolorClient
from tricolor.launcher import python_stubs

from .common import load_average, machine, perf_analyzer, perf_analyzer_env, run
from .summary import Measurement, ModelBreakdown, Summary, SweepPoint, dump

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def model_statistics(http_url: str) -> dict[str, ModelTimes]:
    with TricolorClient(http_url, protocol="http") as client:
        return client.inference_statistics()


def breakdown(
    before: dict[str, ModelTimes], after: dict[str, ModelTimes]
) -> dict[str, ModelBreakdown]:
    """Per model: requests, executions, mean batch, and mean ms per request in each phase."""
    result = {}
    for name, end in after.items():
        start = before.get(name)
        if start is None:
            continue
        delta = end - start
        if delta.requests <= 0:
            continue
        result[name] = ModelBreakdown(
            requests=delta.requests,
            executions=delta.executions,
            inferences=delta.inferences,
            mean_batch=delta.inferences / max(delta.executions, 1),
            ms={
                phase: getattr(delta, f"{phase}_ns") / delta.requests / 1e6
                for phase in ("success", *STAT_PHASES)
            },
        )
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads) so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def server_cpu_seconds(server_pid: int) -> Counter[str]:
    """CPU seconds so far of tritonserver and of each model's stubs (summed over instances)."""
    usage = Counter({"tritonserver": cpu_seconds(server_pid)})
    for stub in python_stubs(server_pid):
        usage[stub.model] += cpu_seconds(stub.pid)
    return usage


def client_cpu_seconds() -> float:
    """CPU seconds of this process's finished children: perf_analyzer, once it has exited."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_per_image(
    before: Counter[str], after: Counter[str], images: int, seconds: float
) -> tuple[dict[str, float], float]:
    """Core-ms per image by process, and the cores they kept busy on average."""
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    per_image = {name: 1000 * value / max(images, 1) for name, value in spent.items()}
    return per_image, sum(spent.values()) / seconds


def parse_csv(path: Path) -> list[dict[str, float]]:
    rows = []
    with path.open() as handle:
        for raw in csv.DictReader(handle):
            row = {}
            for key, value in raw.items():
                if key is None:
                    continue
                try:
                    row[key.strip()] = float(value)
                except (TypeError, ValueError):
                    continue
            if "Inferences/Second" in row:
                rows.append(row)
    return rows


def measure(
    *,
    model: str,
    grpc_url: str,
    http_url: str,
    metrics_url: str | None,
    input_data: Path,
    out_csv: Path,
    mode: str = "concurrency",
    level: float = 1,
    batch_size: int = 1,
    measurement_ms: int = 4000,
    stability: int = 15,
    max_trials: int = 6,
    timeout_s: float = 300,
    server_pid: int | None = None,
) -> Measurement:
    """One level of one sweep; retried without `--collect-metrics` if that part fails."""
    level_text = f"{level:g}"
    command = [
        str(perf_analyzer()),
        "-m", model,
        "-u", grpc_url,
        "-i", "grpc",
        "-b", str(batch_size),
        "--input-data", str(input_data),
        "--measurement-interval", str(measurement_ms),
        "--stability-percentage", str(stability),
        "--max-trials", str(max_trials),
        "--percentile", "99",
        "--verbose-csv",
        "-f", str(out_csv),
    ]  # fmt: skip
    if mode == "concurrency":
        command += ["--concurrency-range", f"{level_text}:{level_text}"]
    elif mode == "request_rate":
        command += ["--request-rate-range", f"{level_text}:{level_text}"]
    else:
        raise ValueError(f"unknown mode {mode!r}")
    attempts = []
    if metrics_url:
        attempts.append([*command, "--collect-metrics", "--metrics-url", metrics_url])
    attempts.append(command)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    last = None
    for attempt in attempts:
        before = model_statistics(http_url)
        cpu_before = server_cpu_seconds(server_pid) if server_pid else Counter()
        cpu_before["perf_analyzer"] = client_cpu_seconds()
        started = time.perf_counter()
        last = run(attempt, env=perf_analyzer_env(), timeout=timeout_s)
        elapsed = time.perf_counter() - started
        cpu_after = server_cpu_seconds(server_pid) if server_pid else Counter()
        cpu_after["perf_analyzer"] = client_cpu_seconds()
        after = model_statistics(http_url)
        out_csv.with_suffix(".log").write_text(last.stdout + last.stderr)
        if "stable measurement" in last.stdout + last.stderr:
            break  # unstable, not a metrics problem: retrying without metrics would not help
        if last.returncode == 0 and out_csv.exists():
            rows = parse_csv(out_csv)
            if rows:
                models = breakdown(before, after)
                images = models[model].inferences if model in models else 0
                cpu, cores_busy = cpu_per_image(cpu_before, cpu_after, images, elapsed)
                return Measurement(
                    model=model,
                    mode=mode,
                    level=level,
                    batch_size=batch_size,
                    row=rows[-1],
                    models=models,
                    metrics_collected="--collect-metrics" in attempt,
                    cpu_ms_per_image=cpu,
                    cores_busy=cores_busy,
                )
    assert last is not None
    raise RuntimeError(
        f"perf_analyzer failed on {model} {mode}={level_text} (rc {last.returncode}):\n"
        f"{(last.stdout + last.stderr)[-3000:]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="classify")
    parser.add_argument("--grpc-url", required=True)
    parser.add_argument("--http-url", required=True)
    parser.add_argument("--metrics-url", help="host:port of the metrics endpoint")
    parser.add_argument("--server-pid", type=int, help="tritonserver's PID, for the CPU table")
    parser.add_argument("--input-data", type=Path, required=True, help="from perf.inputs")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--measurement-ms", type=int, default=1500)
    parser.add_argument("--out", type=Path, required=True, help="folder for the CSV and summary")
    args = parser.parse_args()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    load = load_average()
    result = measure(
        model=args.model,
        grpc_url=args.grpc_url,
        http_url=args.http_url,
        metrics_url=args.metrics_url,
        input_data=args.input_data,
        out_csv=args.out / f"{args.model}_c{args.concurrency}.csv",
        level=args.concurrency,
        measurement_ms=args.measurement_ms,
        stability=999,
        max_trials=3,
        server_pid=args.server_pid,
    )
    point = SweepPoint(run=f"{args.model}_online", level=args.concurrency, load=load, result=result)
    summary = Summary(args.out.name, started, machine(), [], load, load_average(), [point])
    dump(summary, args.out / "summary.json")
    print(f"{args.model} c={args.concurrency}: {result.throughput:.2f} infer/s -> {args.out}")


if __name__ == "__main__":
    main()
