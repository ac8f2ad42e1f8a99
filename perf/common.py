"""Shared by the perf scripts: where things are, the photos, perf_analyzer and its environment."""

from __future__ import annotations

import io
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

PERF_DIR = Path(__file__).resolve().parent
ROOT = PERF_DIR.parent
OUT_DIR = PERF_DIR / "out"
SHARED_IMAGES = ROOT.parent / "shared" / "images"
MODEL_REPOSITORY = ROOT / "model_repository"
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}

sys.path[:0] = [str(ROOT / "src"), str(MODEL_REPOSITORY / "preprocess" / "1")]


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
