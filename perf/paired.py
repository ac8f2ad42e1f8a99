"""Concurrency 1, served and in-process, interleaved photo by photo.

For each photo in turn: one `classify` request to the running server (gRPC, the same client as
the CLI), then the same photo decoded and run through the same ONNX in this process (batch 1,
all cores). Both halves of a pair run within ~0.1 s of each other, so this VM's swings in speed
(30% from one minute to the next) hit both alike, and their p99s can be compared directly.

    .venv/bin/python -m perf.paired --grpc-url localhost:8001 [--images DIR] [--limit N] \\
        [--passes 1] --out perf/out/paired.json      # against a running server
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from tricolor.client import TricolorClient
from tricolor.settings import MODEL_REPOSITORY

from .common import model_inputs, photos
from .raw_limit import ort_session
from .summary import LatencySummary, Paired, dump

# between the halves of a pair: the served model's idle ONNX Runtime workers stop spinning
SETTLE_S = 0.05


def summary(latencies_s: list[float]) -> LatencySummary:
    return LatencySummary(
        p50_ms=1000 * statistics.median(latencies_s),
        p99_ms=1000 * float(np.percentile(latencies_s, 99)),
        mean_ms=1000 * statistics.fmean(latencies_s),
    )


def paired_latency(grpc_url: str, model: Path, encoded: dict[str, bytes], passes: int) -> Paired:
    threads = os.cpu_count() or 1
    run = ort_session(model, threads)

    def in_process(data: bytes) -> None:
        run(model_inputs([data]))

    served: list[float] = []
    local: list[float] = []
    per_photo: dict[str, dict[str, list[float]]] = {}
    with TricolorClient(grpc_url, protocol="grpc") as client:
        warm = next(iter(encoded.values()))
        client.classify_one(warm, "warm-up")
        in_process(warm)
        for _ in range(passes):
            for name, data in encoded.items():
                started = time.perf_counter()
                result = client.classify_one(data, name)
                served.append(time.perf_counter() - started)
                if result.error is not None:
                    raise RuntimeError(f"{name}: {result.error}")
                time.sleep(SETTLE_S)
                started = time.perf_counter()
                in_process(data)
                local.append(time.perf_counter() - started)
                time.sleep(SETTLE_S)
                photo = per_photo.setdefault(name, {"served": [], "in_process": []})
                photo["served"].append(served[-1])
                photo["in_process"].append(local[-1])
    return Paired(
        requests=len(served),
        threads=threads,
        served=summary(served),
        in_process=summary(local),
        per_photo_p50_ms={
            name: {side: 1000 * statistics.median(values) for side, values in sides.items()}
            for name, sides in per_photo.items()
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc-url", required=True)
    parser.add_argument("--model", type=Path, default=MODEL_REPOSITORY / "resnet50/1/model.onnx")
    parser.add_argument("--images", type=Path, help="a folder of photos (default: scikit-image's)")
    parser.add_argument("--limit", type=int, help="the first N photos only")
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    encoded = dict(list(photos(args.images).items())[: args.limit])
    result = paired_latency(args.grpc_url, args.model, encoded, args.passes)
    dump(result, args.out)
    print(
        f"{result.requests} pairs: served p50 {result.served.p50_ms:.1f} ms, "
        f"in-process p50 {result.in_process.p50_ms:.1f} ms -> {args.out}"
    )


if __name__ == "__main__":
    main()
