"""Build resnet50's TensorRT FP16 plan when it is missing or stale (inside NVIDIA's TensorRT image).

    python3 build_engines/build_engine.py [--out-dir DIR] [--force | --check]

Writes DIR/model.plan, its provenance record DIR/model.plan.json (TensorRT version, GPU name
and compute capability, the ONNX file's SHA-256, the build settings) and the timing cache
DIR/timing.cache that makes the next build faster. Exit 0 when the plan is current or built,
1 when the build failed (`--check`: when the plan is stale; nothing is built).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from tricolor.engine import (
    OPT_BATCH,
    PLAN_NAME,
    RECORD_NAME,
    TIMING_CACHE_NAME,
    WORKSPACE_BYTES,
    EngineBuildError,
    Target,
    build_plan,
    file_sha256,
    parse_gpus,
    plan_problem,
    provenance_record,
    release_version,
    settings_from_config,
    visible_gpus,
    write_atomically,
)

LOG = logging.getLogger("build_engine")
REPO_ROOT = Path(__file__).resolve().parent.parent
RESNET50 = REPO_ROOT / "model_repository" / "resnet50"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", type=Path, default=RESNET50 / "1" / "model.onnx")
    parser.add_argument(
        "--config", type=Path, default=RESNET50 / "config.pbtxt", help="max batch comes from it"
    )
    parser.add_argument("--out-dir", type=Path, default=RESNET50 / "1")
    parser.add_argument("--opt-batch", type=int, default=OPT_BATCH)
    parser.add_argument("--workspace-bytes", type=int, default=WORKSPACE_BYTES)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--force", action="store_true", help="rebuild even if current")
    action.add_argument("--check", action="store_true", help="only say whether it is current")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    import tensorrt as trt  # noqa: PLC0415 (only NVIDIA's TensorRT image has it)

    settings = settings_from_config(
        args.config, args.opt_batch, workspace_bytes=args.workspace_bytes
    )
    target = Target(release_version(trt.__version__), parse_gpus(visible_gpus()))
    onnx_sha256 = file_sha256(args.onnx)
    plan, record = args.out_dir / PLAN_NAME, args.out_dir / RECORD_NAME
    problem = plan_problem(plan, record, target, onnx_sha256, settings)
    if problem is None and not args.force:
        LOG.info("%s is current (TensorRT %s, %s)", plan, target.tensorrt_version, target.gpus[0])
        return 0
    if args.check:
        LOG.error("%s is stale: %s", plan, problem)
        return 1
    LOG.info("building %s: %s", plan, problem or "--force")
    LOG.info(
        "TensorRT %s on %s; profile %s; workspace %d MiB; precision %s",
        trt.__version__,
        target.gpus[0],
        settings.profile(),
        settings.workspace_bytes >> 20,
        settings.precision,
    )
    cache_path = args.out_dir / TIMING_CACHE_NAME
    started = time.monotonic()
    try:
        serialized, cache = build_plan(
            trt,
            args.onnx.read_bytes(),
            settings,
            cache_path.read_bytes() if cache_path.is_file() else None,
        )
    except EngineBuildError as exc:
        LOG.error("%s", exc)
        return 1
    provenance = provenance_record(settings, target, trt.__version__, onnx_sha256)
    record.unlink(missing_ok=True)  # a plan without its record is never mistaken for current
    write_atomically(plan, serialized)
    write_atomically(cache_path, cache)
    write_atomically(record, (json.dumps(provenance, indent=2) + "\n").encode())
    LOG.info(
        "wrote %s (%.1f MiB) in %.0f s", plan, len(serialized) / 2**20, time.monotonic() - started
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
