"""The Triton image's entrypoint: decide what resnet50 serves, then run `tritonserver`.

    python3 -m tricolor.container [--mode gpu|cpu] [--engines /engines]

`gpu`: the baked model repository is copied to a writable served copy. If the engine step's
plan (`/engines/model.plan` and its provenance record) was built for this server's TensorRT,
these GPUs, this ONNX and these settings, it is served (`config.pbtxt`). Otherwise resnet50
serves the same ONNX through ONNX Runtime with its TensorRT execution accelerator in FP16
(`configs/onnx-tensorrt.pbtxt`): a banner in the log, and the served copy's
`postprocess/weights.json` carries the reason into every answer's `WEIGHTS` and into
postprocess's load-time warning. `cpu`: the baked repository with `--model-config-name=cpu`.
Either way the launcher runs Triton (drain on SIGTERM, restart when a Python stub dies).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from tricolor.engine import (
    FALLBACK_CONFIG,
    PLAN_NAME,
    RECORD_NAME,
    NoGpuError,
    Target,
    fallback_provenance,
    file_sha256,
    parse_gpus,
    plan_problem,
    settings_from_config,
    version_from_code,
    visible_gpus,
)
from tricolor.launcher import ServerOptions, serve
from tricolor.settings import MODEL_REPOSITORY

SERVED_REPOSITORY = Path("/var/lib/tricolor/model_repository")
ENGINES = Path("/engines")
# trt_engine_cache_path of configs/onnx-tensorrt.pbtxt: ONNX Runtime keeps its engines there
FALLBACK_CACHE = Path("/var/cache/tricolor/onnx-tensorrt")
TENSORRT_LIBRARY = "libnvinfer.so.10"
# the GPU stack's dashboard needs GPU metrics and the latency summaries (p50 / p99)
METRICS_ARGS = ["--allow-gpu-metrics=true", "--metrics-config=summary_latencies=true"]


@dataclass(frozen=True)
class Choice:
    """What resnet50 serves: the config variant (None: config.pbtxt) and why."""

    config_name: str | None
    problem: str | None  # why the plan is not served; None when it is


def server_tensorrt_version() -> str:
    """The TensorRT library Triton's TensorRT backend loads, 'major.minor.patch'."""
    try:
        return version_from_code(ctypes.CDLL(TENSORRT_LIBRARY).getInferLibVersion())
    except OSError as exc:
        return f"unavailable ({exc})"


def choose(repository: Path, engines: Path, target: Target) -> Choice:
    """Serve the plan if it fits this server, else the ONNX Runtime + TensorRT variant."""
    resnet50 = repository / "resnet50"
    problem = plan_problem(
        engines / PLAN_NAME,
        engines / RECORD_NAME,
        target,
        file_sha256(resnet50 / "1" / "model.onnx"),
        settings_from_config(resnet50 / "config.pbtxt"),
    )
    return Choice(None if problem is None else FALLBACK_CONFIG, problem)


def prepare_gpu_repository(source: Path, served: Path, engines: Path, target: Target) -> Choice:
    """The served copy of `source`, with the plan or with the fallback's provenance."""
    if served.exists():
        shutil.rmtree(served)
    shutil.copytree(source, served)
    choice = choose(served, engines, target)
    if choice.problem is None:
        shutil.copy2(engines / PLAN_NAME, served / "resnet50" / "1" / PLAN_NAME)
        return choice
    weights = served / "postprocess" / "weights.json"
    provenance = json.loads(weights.read_text()) if weights.exists() else {}
    weights.write_text(json.dumps(fallback_provenance(provenance, choice.problem), indent=2) + "\n")
    return choice


def banner(problem: str) -> str:
    bar = "!" * 78
    return (
        f"{bar}\n!! tricolor: resnet50's TensorRT plan is NOT served: {problem}\n"
        "!! Serving the same ONNX through ONNX Runtime + TensorRT EP (FP16) instead: slower\n"
        "!! to start, its numbers are not the plan's. Every answer's WEIGHTS says FALLBACK.\n"
        "!! To fix: rebuild the plan on this host (`docker compose --profile gpu run --rm\n"
        f"!! engine --force`), then restart triton.\n{bar}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--engines", type=Path, default=ENGINES, help="the engine step's output")
    parser.add_argument("--source", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument("--served", type=Path, default=SERVED_REPOSITORY)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = ServerOptions(
        address="0.0.0.0",  # inside the container; compose and Kubernetes decide who reaches it
        prefer="system",
        log_verbose=int(os.environ.get("TRITON_LOG_VERBOSE", "0")),
        extra_args=METRICS_ARGS,
    )
    if args.mode == "cpu":
        options.model_repository, options.config_name = args.source, "cpu"
        return serve(options)
    try:
        target = Target(server_tensorrt_version(), parse_gpus(visible_gpus()))
    except NoGpuError as exc:
        print(f"tricolor: {exc}", file=sys.stderr, flush=True)
        return 2
    choice = prepare_gpu_repository(args.source, args.served, args.engines, target)
    if choice.problem is None:
        print(f"tricolor: serving {args.engines / PLAN_NAME} on {target.gpus[0].name}", flush=True)
    else:
        print(banner(choice.problem), file=sys.stderr, flush=True)
        FALLBACK_CACHE.mkdir(parents=True, exist_ok=True)
    options.model_repository, options.config_name = args.served, choice.config_name
    return serve(options)


if __name__ == "__main__":
    sys.exit(main())
