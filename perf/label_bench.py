"""`tricolor label`'s images/s against perf_analyzer on `classify`, same photos, same concurrency
and batch, on one embedded server; alternating runs (label, perf_analyzer, label, ...) so both
see the same minutes of this shared machine. Writes perf/LABEL.md.

    .venv/bin/python -m perf.label_bench [--images DIR] [--copies 8] [--concurrency 4]

The label runs store into a fresh SQLite catalogue each time. Every copy of a photo gets a few
bytes after its end (ignored by the decoders) so each file is a distinct picture to label.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tricolor.launcher import start_on_free_ports

from .analyzer import measure
from .common import OUT_DIR, PERF_DIR, load_average, machine, photos
from .inputs import generate

SUMMARY = re.compile(r"(\d+) images?: (\d+) labelled .* in ([\d.]+) s")


def make_collection(folder: Path, images: dict[str, bytes], copies: int) -> int:
    count = 0
    for copy in range(copies):
        for name, data in images.items():
            path = folder / f"copy{copy}" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data + b"\0tricolor-bench" + str(copy).encode())
            count += 1
    return count


def label_rate(folder: Path, grpc_url: str, concurrency: int, batch_size: int) -> dict:
    """One `tricolor label` run into a new catalogue: images/s over the run as its summary
    times it (walk, hashing, provenance, inference, storing; not the interpreter's start)."""
    with tempfile.TemporaryDirectory(prefix="tricolor-label-bench-") as state:
        command = [
            str(Path(sys.executable).parent / "tricolor"),
            "label", str(folder),
            "--db", f"sqlite:///{state}/catalogue.db",
            "--url", grpc_url,
            "--concurrency", str(concurrency),
            "--batch-size", str(batch_size),
        ]  # fmt: skip
        started, cpu_before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in ("ru_utime", "ru_stime"))
    match = SUMMARY.search(done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"tricolor label failed (rc {done.returncode}):\n{done.stderr[-2000:]}")
    labelled, elapsed = int(match.group(2)), float(match.group(3))
    return {
        "labelled": labelled,
        "run_s": elapsed,
        "wall_s": wall,
        "images_per_s": labelled / elapsed,
        "client_cpu_ms": 1000 * cpu_s / labelled,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images", type=Path, help="a folder of photos (default: scikit-image's bundled ones)"
    )
    parser.add_argument("--copies", type=int, default=8, help="copies of each photo to label")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="label / perf_analyzer pairs")
    parser.add_argument("--measurement-ms", type=int, default=10000)
    parser.add_argument(
        "--stability",
        type=int,
        default=100,
        help="perf_analyzer's --stability-percentage: loose, this shared VM swings ~30 %%",
    )
    parser.add_argument("--out", type=Path, default=PERF_DIR / "LABEL.md")
    args = parser.parse_args()

    selected = photos(args.images)
    work = OUT_DIR / "label_bench"
    inputs = generate(selected, work / "inputs")["classify"]
    started = time.perf_counter()
    server = start_on_free_ports(work / "tritonserver.log")
    labels, analyzers = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="tricolor-label-photos-") as folder:
            files = make_collection(Path(folder), selected, args.copies)
            for round_number in range(args.rounds):
                labels.append(
                    label_rate(Path(folder), server.grpc_url, args.concurrency, args.batch_size)
                )
                analyzers.append(
                    measure(
                        model="classify",
                        grpc_url=server.grpc_url,
                        http_url=server.http_url,
                        metrics_url=None,
                        input_data=inputs,
                        out_csv=work / f"classify_c{args.concurrency}_{round_number}.csv",
                        level=args.concurrency,
                        batch_size=args.batch_size,
                        measurement_ms=args.measurement_ms,
                        stability=args.stability,
                        max_trials=10,
                    ).throughput
                )
                print(
                    f"round {round_number + 1}: label {labels[-1]['images_per_s']:.2f} img/s, "
                    f"perf_analyzer {analyzers[-1]:.2f} img/s",
                    flush=True,
                )
    finally:
        server.stop()
    took = time.perf_counter() - started
    label_median = statistics.median(run["images_per_s"] for run in labels)
    analyzer_median = statistics.median(analyzers)
    ratio = label_median / analyzer_median
    host = machine()
    rows = "\n".join(
        f"| {number} | {run['labelled']} in {run['run_s']:.1f} s ({run['wall_s']:.1f} s with "
        f"the interpreter's start) | {run['images_per_s']:.2f} | "
        f"{rate:.2f} | {run['images_per_s'] / rate:.2f} | {run['client_cpu_ms']:.1f} ms |"
        for number, (run, rate) in enumerate(zip(labels, analyzers, strict=True), start=1)
    )
    command = (
        f"`.venv/bin/python -m perf.label_bench{f' --images {args.images}' if args.images else ''}"
        f" --copies {args.copies} "
        f"--concurrency {args.concurrency} --batch-size {args.batch_size} --rounds {args.rounds}`"
    )
    args.out.write_text(
        f"""# `tricolor label` against perf_analyzer

Generated by {command} ({took / 60:.1f} min, load average at the end {load_average()}).

`tricolor label` labels {files} files ({len(selected)} photos x {args.copies} copies, each copy
a distinct picture) into a new SQLite catalogue per run; its rate is labelled images over the
run's time as its summary line gives it (walk, hashing, the provenance probe, inference,
storing; the Python interpreter's start-up is shown beside it). perf_analyzer
sends the same photos to `classify` at the same concurrency ({args.concurrency} requests in
flight) and batch ({args.batch_size} images per request), gRPC, on the same embedded server
(CPU, {host.cores} cores: {host.cpu}), in alternating rounds.

| round | label | label img/s | perf_analyzer img/s | ratio | label's own CPU per image |
|--:|---|--:|--:|--:|--:|
{rows}

Median: label **{label_median:.2f}** img/s, perf_analyzer **{analyzer_median:.2f}** img/s,
ratio **{ratio:.2f}** (goal >= 0.9).
"""
    )
    print(f"label {label_median:.2f} img/s vs perf_analyzer {analyzer_median:.2f}: {ratio:.2f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
