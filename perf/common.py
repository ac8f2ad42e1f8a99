"""Shared by the perf modules: where things are, the photos, the served preprocessing,
perf_analyzer and its environment, the machine."""

from __future__ import annotations

import functools
import io
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from tricolor.imaging import Limits, normalise, preprocess
from tricolor.model_config import read_model_config, string_parameter
from tricolor.settings import MODEL_REPOSITORY

from .summary import Machine

PERF_DIR = Path(__file__).resolve().parent
OUT_DIR = PERF_DIR / "out"
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@functools.cache
def served_sizes() -> tuple[int, int]:
    """`resize_size` and `thumbnail_size` of the served preprocess model, from its config."""
    config = read_model_config(MODEL_REPOSITORY / "preprocess" / "config.pbtxt")
    return (
        int(string_parameter(config, "resize_size")),
        int(string_parameter(config, "thumbnail_size")),
    )


def model_inputs(encoded: Iterable[bytes]) -> np.ndarray:
    """What `preprocess` hands `resnet50` for these encoded images: FP32 [N, 3, 224, 224]."""
    resize_size, thumbnail_size = served_sizes()
    return normalise(
        [preprocess(data, resize_size, thumbnail_size, Limits()).crop for data in encoded]
    )


def bundled_photos() -> dict[str, bytes]:
    """scikit-image's bundled photos as RGB JPEGs (the grey ones too: TorchServe's
    image_classifier refuses single-channel images, and the peer gets the same photos),
    300-1000 px, and one of them upscaled to 2560 px so that the drafted JPEG path is measured."""
    from skimage import data  # noqa: PLC0415 (slow import, only where photos are needed)

    arrays = {
        "astronaut": data.astronaut(),
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "rocket": data.rocket(),
        "hubble_deep_field": data.hubble_deep_field(),
        "immunohistochemistry": data.immunohistochemistry(),
        "camera": data.camera(),
        "coins": data.coins(),
        "clock": data.clock(),
    }
    photos = {}
    for name, array in arrays.items():
        buffer = io.BytesIO()
        Image.fromarray(array).convert("RGB").save(buffer, format="JPEG", quality=90)
        photos[f"{name}.jpg"] = buffer.getvalue()
    buffer = io.BytesIO()
    large = Image.fromarray(arrays["coffee"]).resize((2560, 1707), Image.Resampling.LANCZOS)
    large.save(buffer, format="JPEG", quality=90)
    photos["coffee_2560.jpg"] = buffer.getvalue()
    return photos


def photos(directory: Path | None = None) -> dict[str, bytes]:
    """Encoded photos: every JPEG/PNG/BMP/WebP in `directory`, or scikit-image's bundled ones."""
    if directory is None:
        return bundled_photos()
    found = {
        path.name: path.read_bytes()
        for path in sorted(directory.iterdir())
        if path.suffix.lower() in PHOTO_SUFFIXES
    }
    if not found:
        raise SystemExit(f"{directory}: no {'/'.join(sorted(PHOTO_SUFFIXES))} files in it")
    return found


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
    import nvidia.cuda_runtime  # noqa: PLC0415 (the `perf` extra)

    env = dict(os.environ)
    library = str(Path(nvidia.cuda_runtime.__path__[0]) / "lib")
    env["LD_LIBRARY_PATH"] = os.pathsep.join([library, env.get("LD_LIBRARY_PATH", "")])
    return env


def machine() -> Machine:
    """What the numbers were taken on."""
    cpu = platform.processor() or "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.partition(":")[2].strip()
            break
    memory = "unknown"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return Machine(
        cpu=cpu,
        cores=os.cpu_count() or 1,
        memory=memory,
        kernel=platform.release(),
        python=platform.python_version(),
    )


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, text=True, capture_output=True, **kwargs)
