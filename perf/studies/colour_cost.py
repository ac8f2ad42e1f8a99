"""CPU time of postprocess's colour step on one batch, this tree's against another commit's.

    .venv/bin/python perf/studies/colour_cost.py [--base fb7b736] [--base main] [--batch 8]

The batch is what `preprocess` hands `postprocess`: the photos' 64 px thumbnails (the served
`thumbnail_size`), padded. Each `--base` commit's colour module is read with `git show` and
imported beside this tree's; then the calls alternate, one of each per round, and each call's
cost is its process CPU time (`time.process_time`: every thread of this process, so BLAS
threads count too). CPU time per call hardly moves with the machine's load, unlike wall time:
both are printed so that the difference shows.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tricolor import colours as current
from tricolor.imaging import Limits, pad_thumbnails, preprocess
from tricolor.settings import PROJECT_ROOT

PERF_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PERF_ROOT.parent))  # run as a script: `perf` from the repository root

from perf.common import photos, served_sizes  # noqa: E402

# where each generation kept the colour code
MODULE_PATHS = ("src/tricolor/colours.py", "model_repository/postprocess/1/postprocessing.py")

Step = Callable[[np.ndarray, np.ndarray], object]


def module_at(commit: str, scratch: Path):
    for path in MODULE_PATHS:
        shown = subprocess.run(
            ["git", "show", f"{commit}:{path}"], cwd=PROJECT_ROOT, capture_output=True, text=True
        )
        if shown.returncode == 0:
            file = scratch / f"colours_{commit.replace('/', '_')}.py"
            file.write_text(shown.stdout)
            spec = importlib.util.spec_from_file_location(file.stem, file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[file.stem] = module  # dataclasses look their module up there
            spec.loader.exec_module(module)
            return module
    raise SystemExit(f"{commit}: none of {MODULE_PATHS} in it")


def step_of(module) -> Step:
    """What that commit's postprocess computed per batch: both palettes' dominant colour, and
    the shares where it had them."""
    palettes = (module.RGB_PALETTE, module.RYB_PALETTE)
    if hasattr(module, "colours"):
        return lambda thumbnails, sizes: module.colours(thumbnails, sizes, palettes)

    def step(thumbnails: np.ndarray, sizes: np.ndarray) -> None:
        for palette in palettes:
            module.dominant_colours(thumbnails, sizes, palette)
            if hasattr(module, "palette_shares"):
                module.palette_shares(thumbnails, sizes, palette)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", action="append", help="a commit to compare (repeatable)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    resize_size, thumbnail_size = served_sizes()
    encoded = list(photos().values())
    made = [
        preprocess(encoded[i % len(encoded)], resize_size, thumbnail_size, Limits()).thumbnail
        for i in range(args.batch)
    ]
    thumbnails, sizes = pad_thumbnails(made, thumbnail_size)
    with tempfile.TemporaryDirectory() as scratch:
        steps = {base: step_of(module_at(base, Path(scratch))) for base in args.base or ["main"]}
        steps["this tree"] = step_of(current)
        cpu: dict[str, list[float]] = {name: [] for name in steps}
        wall: dict[str, list[float]] = {name: [] for name in steps}
        for step in steps.values():
            step(thumbnails, sizes)  # warm-up
        for _ in range(args.rounds):
            for name, step in steps.items():
                cpu_start, wall_start = time.process_time(), time.perf_counter()
                step(thumbnails, sizes)
                cpu[name].append(time.process_time() - cpu_start)
                wall[name].append(time.perf_counter() - wall_start)
    print(f"colour step on a batch of {args.batch} thumbnails ({thumbnail_size} px), ")
    print(f"{args.rounds} interleaved rounds; core-ms per image (median, quartiles):")
    for name in steps:
        per_image = [1000 * value / args.batch for value in cpu[name]]
        wall_ms = [1000 * value / args.batch for value in wall[name]]
        q1, median, q3 = statistics.quantiles(per_image, n=4)
        w1, wall_median, w3 = statistics.quantiles(wall_ms, n=4)
        print(
            f"  {name:>10}: CPU {median:.3f} ({q1:.3f}-{q3:.3f}) core-ms, "
            f"wall {wall_median:.3f} ({w1:.3f}-{w3:.3f}) ms"
        )


if __name__ == "__main__":
    main()
