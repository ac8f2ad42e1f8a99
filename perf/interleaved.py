"""Served `classify` against the same work in-process, in alternating rounds (issue 19's ratio).

Each round: perf_analyzer on `classify` (gRPC, `concurrency` clients, one image per request,
the second look off as in every sweep), then the in-process pipeline for the same seconds:
decode + the served preprocessing (torchvision's transform, bit for bit) + ONNX Runtime on all
cores, batches of 8. Alternating puts both in the same minutes, so their ratio means
something on a VM whose speed swings; the ratio's median and range over the rounds are kept.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from tricolor.launcher import TritonServer

from .analyzer import measure
from .common import model_inputs
from .quiet import MachineLoad, Window
from .raw_limit import ort_session
from .summary import Interleaved

PIPELINE_BATCH = 8


def pipeline_rate(run, encoded: list[bytes], seconds: float) -> float:
    """Images per second, decode included, for `seconds` of batches of 8."""
    images, position = 0, 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        batch = [encoded[(position + i) % len(encoded)] for i in range(PIPELINE_BATCH)]
        position += PIPELINE_BATCH
        run(model_inputs(batch))
        images += PIPELINE_BATCH
    return images / (time.perf_counter() - started)


def served_vs_pipeline(
    server: TritonServer,
    model: Path,
    input_data: Path,
    encoded: list[bytes],
    out: Path,
    concurrency: int,
    rounds: int,
    measurement_ms: int,
) -> tuple[Interleaved, list[MachineLoad]]:
    run = ort_session(model, os.cpu_count() or 1)
    pipeline_rate(run, encoded, 1.0)  # warm-up
    served, in_process, loads = [], [], []
    for index in range(rounds):
        with Window() as window:
            result = measure(
                model="classify",
                grpc_url=server.grpc_url,
                http_url=server.http_url,
                metrics_url=None,
                input_data=input_data,
                out_csv=out / f"round{index + 1}.csv",
                level=concurrency,
                measurement_ms=measurement_ms,
                stability=999,
                max_trials=3,
                server_pid=server.process.pid if server.process else None,
            )
            served.append(result.throughput)
            in_process.append(pipeline_rate(run, encoded, 3 * measurement_ms / 1000))
        loads.append(window.load)
        print(
            f"interleaved round {index + 1}/{rounds}: served {served[-1]:.2f}, in-process "
            f"{in_process[-1]:.2f} img/s; {window.load.text()}",
            flush=True,
        )
    ratios = [s / p for s, p in zip(served, in_process, strict=True)]
    return (
        Interleaved(
            concurrency=concurrency,
            batch=PIPELINE_BATCH,
            served=served,
            in_process=in_process,
            ratio_median=statistics.median(ratios),
            ratio_min=min(ratios),
            ratio_max=max(ratios),
        ),
        loads,
    )
