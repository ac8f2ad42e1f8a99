"""Concurrency 1, served and in-process, interleaved photo by photo.

For each photo in turn: one `classify` request to the running server (gRPC, the same client as
the CLI), then the same photo decoded and run through the same ONNX in this process (batch 1,
all cores). Both halves of a pair run within ~0.1 s of each other, so this VM's swings in speed
(30% from one minute to the next) hit both alike, and their p99s can be compared directly.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
from common import model_inputs
from raw_limit import ort_session

from tricolor.client import TricolorClient

# between the halves of a pair: the served model's idle ONNX Runtime workers stop spinning
SETTLE_S = 0.05


def summary(latencies_s: list[float]) -> dict[str, float]:
    return {
        "p50_ms": 1000 * statistics.median(latencies_s),
        "p99_ms": 1000 * float(np.percentile(latencies_s, 99)),
        "mean_ms": 1000 * statistics.fmean(latencies_s),
    }


def paired_latency(grpc_url: str, model: Path, encoded: dict[str, bytes], passes: int) -> dict:
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
    return {
        "requests": len(served),
        "threads": threads,
        "served": summary(served),
        "in_process": summary(local),
        "per_photo_p50_ms": {
            name: {side: 1000 * statistics.median(values) for side, values in sides.items()}
            for name, sides in per_photo.items()
        },
    }
