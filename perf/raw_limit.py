"""The physical limit on this machine: the same ONNX in-process, no server.

- ONNX Runtime (and OpenVINO, if installed) over batch sizes x thread counts, plus N sessions
  of 1 thread side by side (what N Triton instances do): images/s and batch latency.
- The decode + preprocess cost of the same photos on one core (the `preprocess` code itself).

    .venv/bin/python -m perf.raw_limit [--model model_repository/resnet50/1/model.onnx]
        [--seconds 6] [--out perf/out/raw.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np

from tricolor.settings import MODEL_REPOSITORY

from .common import OUT_DIR, model_inputs, photos
from .summary import Decode, RawLimit, RawRow, dump

CORES = os.cpu_count() or 1


def ort_session(model: Path, threads: int):
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def openvino_session(model: Path, threads: int):
    import openvino as ov  # noqa: PLC0415

    core = ov.Core()
    compiled = core.compile_model(
        str(model),
        "CPU",
        {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        },
    )
    request = compiled.create_infer_request()
    return lambda batch: request.infer({0: batch})[0]


RUNTIMES = {"onnxruntime": ort_session, "openvino": openvino_session}


def timed(run, batch: np.ndarray, seconds: float) -> list[float]:
    run(batch)  # warm-up: first runs allocate and pick kernels
    run(batch)
    latencies, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(latencies) < 3:
        started = time.perf_counter()
        run(batch)
        latencies.append(time.perf_counter() - started)
    return latencies


ROW_COLUMNS = (
    f"{'runtime':<12} {'model':<16} {'sessions':>8} {'threads':>7} {'batch':>5} "
    f"{'images/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'runs':>6}"
)


def row_line(row: RawRow) -> str:
    """One measurement under ROW_COLUMNS (p50 / p99 per batch; none for parallel sessions)."""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    return (
        f"{row.runtime:<12} {row.model:<16} {row.sessions:>8} {row.threads:>7} {row.batch:>5} "
        f"{row.images_per_s:>9.1f} {ms(row.p50_ms):>8} {ms(row.p99_ms):>8} {row.runs:>6}"
    )


def bench_runtime(
    runtime: str, model: Path, inputs: np.ndarray, batches, threads, seconds
) -> list[RawRow]:
    rows = []
    for thread_count in threads:
        run = RUNTIMES[runtime](model, thread_count)
        for batch_size in batches:
            batch = np.ascontiguousarray(np.resize(inputs, (batch_size, *inputs.shape[1:])))
            latencies = timed(run, batch, seconds)
            rows.append(
                RawRow(
                    runtime=runtime,
                    model=model.name,
                    sessions=1,
                    threads=thread_count,
                    batch=batch_size,
                    images_per_s=batch_size * len(latencies) / sum(latencies),
                    p50_ms=1000 * statistics.median(latencies),
                    p99_ms=1000 * float(np.percentile(latencies, 99)),
                    runs=len(latencies),
                )
            )
            print(row_line(rows[-1]), flush=True)
    return rows


def bench_parallel(
    model: Path, inputs: np.ndarray, sessions: int, batch_size: int, seconds: float
) -> RawRow:
    """`sessions` ONNX Runtime sessions of 1 thread each, one Python thread per session."""
    runs = [ort_session(model, 1) for _ in range(sessions)]
    batch = np.ascontiguousarray(np.resize(inputs, (batch_size, *inputs.shape[1:])))
    for run in runs:
        run(batch)
    counts = [0] * sessions
    deadline = time.perf_counter() + seconds

    def loop(index: int) -> None:
        while time.perf_counter() < deadline:
            runs[index](batch)
            counts[index] += 1

    started = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(index,)) for index in range(sessions)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    row = RawRow(
        runtime="onnxruntime",
        model=model.name,
        sessions=sessions,
        threads=1,
        batch=batch_size,
        images_per_s=batch_size * sum(counts) / elapsed,
        p50_ms=None,
        p99_ms=None,
        runs=sum(counts),
    )
    print(row_line(row), flush=True)
    return row


def bench_decode(encoded: dict[str, bytes], repeats: int = 3) -> Decode:
    """Per-image decode + resize + crop + thumbnail + normalise, single-threaded."""
    per_image = {}
    for name, data in encoded.items():
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            model_inputs([data])
            times.append(time.perf_counter() - started)
        per_image[name] = 1000 * min(times)
    values = list(per_image.values())
    return Decode(
        images=len(values),
        mean_ms=statistics.fmean(values),
        median_ms=statistics.median(values),
        max_ms=max(values),
        per_image_ms=per_image,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=MODEL_REPOSITORY / "resnet50/1/model.onnx")
    parser.add_argument(
        "--extra-model",
        type=Path,
        action="append",
        default=[],
        help="another ONNX (e.g. the INT8 one) to run at the best settings",
    )
    parser.add_argument("--images", type=Path, help="a folder of photos (default: scikit-image's)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batches", default="1,2,4,8,16")
    parser.add_argument("--threads", default=",".join(str(t) for t in sorted({1, CORES})))
    parser.add_argument("--runtimes", default="onnxruntime,openvino")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "raw.json")
    args = parser.parse_args()

    encoded = photos(args.images)
    inputs = model_inputs(encoded.values())
    batches = [int(value) for value in args.batches.split(",")]
    threads = [int(value) for value in args.threads.split(",")]
    load_before = os.getloadavg()
    rows = []
    print(ROW_COLUMNS, flush=True)
    for runtime in args.runtimes.split(","):
        try:
            rows += bench_runtime(runtime, args.model, inputs, batches, threads, args.seconds)
        except ImportError:
            print(f"{runtime}: not installed, skipped", flush=True)
    if CORES > 1:
        for batch_size in (1, 4, 8):
            rows.append(bench_parallel(args.model, inputs, CORES, batch_size, args.seconds))
    for extra in args.extra_model:
        if extra.exists():
            rows += bench_runtime("onnxruntime", extra, inputs, [1, 8], [CORES], args.seconds)
    decode = bench_decode(encoded)
    print(f"decode: mean {decode.mean_ms:.1f} ms, max {decode.max_ms:.1f} ms", flush=True)
    main_rows = [row for row in rows if row.model == args.model.name]
    best = max(main_rows, key=lambda row: row.images_per_s)
    batch1 = min(
        (
            row
            for row in main_rows
            if row.batch == 1 and row.sessions == 1 and row.runtime == "onnxruntime"
        ),
        key=lambda row: row.p50_ms or float("inf"),
    )
    dump(RawLimit(rows, decode, best, batch1, list(load_before), list(os.getloadavg())), args.out)
    print(
        f"best: {best.images_per_s:.1f} images/s ({best.runtime}, batch {best.batch}, "
        f"{best.sessions} x {best.threads} threads); batch-1 p50 {batch1.p50_ms:.1f} ms; "
        f"decode mean {decode.mean_ms:.1f} ms/image"
    )


if __name__ == "__main__":
    main()
