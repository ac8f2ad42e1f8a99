"""Shared by the perf scripts: where things are, the photos, perf_analyzer and its environment."""

from __future__ import annotations

import io
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tricolor.imaging import Limits, normalise, preprocess

PERF_DIR = Path(__file__).resolve().parent
ROOT = PERF_DIR.parent
OUT_DIR = PERF_DIR / "out"
SHARED_IMAGES = ROOT.parent / "shared" / "images"
MODEL_REPOSITORY = ROOT / "model_repository"
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


# the served preprocess's settings (model_repository/preprocess/config.pbtxt)
RESIZE_SIZE = 232
THUMBNAIL_SIZE = 64


def model_inputs(encoded: Iterable[bytes]) -> np.ndarray:
    """What `preprocess` hands `resnet50` for these encoded images: FP32 [N, 3, 224, 224]."""
    return normalise(
        [preprocess(data, RESIZE_SIZE, THUMBNAIL_SIZE, Limits()).crop for data in encoded]
    )


def photos(directory: Path = SHARED_IMAGES) -> dict[str, bytes]:
    """Real photos as encoded bytes: ../shared/images, else scikit-image's bundled ones."""
    if directory.is_dir():
        found = {
            path.name: path.read_bytes()
            for path in sorted(directory.iterdir())
            if path.suffix.lower() in PHOTO_SUFFIXES
        }
        if found:
            return found
    from PIL import Image  # noqa: PLC0415
    from skimage import data  # noqa: PLC0415

    arrays = {
        "chelsea": data.chelsea(),
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "rocket": data.rocket(),
    }
    out = {}
    for name, array in arrays.items():
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=90)
        out[f"{name}.jpg"] = buffer.getvalue()
    return out


@dataclass(frozen=True)
class ModelLimit:
    """The model-only rate a run's served rate is held against, and where it came from."""

    images_per_s: float
    core_ms: float  # CPU core-ms per image at that rate, on all of the machine's cores
    source: str


def model_limit(summary: dict) -> ModelLimit | None:
    """The in-process best, unless `resnet50` alone through Triton went faster in the same run.

    A server cannot beat the same ONNX in-process, so then the in-process runs caught a slower
    minute of this shared VM and the served model-only rate is the truer (and stricter) limit.
    """
    raw = summary.get("raw")
    if not raw:
        return None
    best = raw["best"]
    source = (
        f"in-process {best['runtime']}, batch {best['batch']}, "
        f"{best['sessions']} x {best['threads']} threads"
    )
    rate = best["images_per_s"]
    served = [
        row
        for row in summary.get("sweeps", [])
        if row.get("run") in ("resnet50_online", "resnet50_offline") and "error" not in row
    ]
    fastest = max(served, key=lambda r: r["row"]["Inferences/Second"], default=None)
    if fastest is not None and fastest["row"]["Inferences/Second"] > rate:
        source = (
            f"`resnet50` alone through Triton ({fastest['run']}, concurrency "
            f"{fastest['level']:g}), faster than the in-process best of this run ({rate:.2f}/s, "
            f"{source}), which therefore ran in a slower minute"
        )
        rate = fastest["row"]["Inferences/Second"]
    cores = int(summary["machine"]["cores"])
    return ModelLimit(images_per_s=rate, core_ms=1000 * cores / rate, source=source)


def perf_analyzer() -> Path:
    """The perf_analyzer binary the tritonclient wheel installs into the venv."""
    candidates = [Path(sys.executable).parent / "perf_analyzer"]
    found = shutil.which("perf_analyzer")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise FileNotFoundError("perf_analyzer not found: run `make setup` (tritonclient[all])")


def perf_analyzer_env() -> dict[str, str]:
    """perf_analyzer links libcudart.so.12 even on CPU: the pinned nvidia-cuda-runtime-cu12."""
    env = dict(os.environ)
    libraries = []
    try:
        import nvidia.cuda_runtime  # noqa: PLC0415

        libraries.append(str(Path(nvidia.cuda_runtime.__path__[0]) / "lib"))
    except ImportError:
        pass
    if libraries:
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*libraries, env.get("LD_LIBRARY_PATH", "")])
    return env


def machine() -> dict[str, str]:
    """What the numbers were taken on."""
    cpu = platform.processor() or "unknown"
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"model name\s*:\s*(.+)", text)
        if match:
            cpu = match.group(1).strip()
    except OSError:
        pass
    memory = "unknown"
    try:
        match = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
        if match:
            memory = f"{int(match.group(1)) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, text=True, capture_output=True, **kwargs)
