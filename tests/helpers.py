"""What the tests share besides fixtures: the server starter, raw requests, waits with
deadlines, real and generated images, the torchvision oracle."""

from __future__ import annotations

import functools
import io
import struct
import subprocess
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
import pytest
from PIL import Image

from tricolor.client import image_input
from tricolor.contract import OUTPUT_NAMES
from tricolor.launcher import TritonServer, metric_sum, python_stubs, start_on_free_ports
from tricolor.samples import sample_photos
from tricolor.settings import MODEL_REPOSITORY, PROJECT_ROOT

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
EXPORT_PYTHON = PROJECT_ROOT / ".venv-export" / "bin" / "python"
# how long a wait for a condition may take before it fails with what it saw: long enough for a
# loaded two-core machine, short enough that a hang is reported rather than waited out
WAIT_S = 60.0
# scikit-image's bundled JPEG files, used as they are (real camera JPEGs)
SKIMAGE_JPEGS = ("retina.jpg", "rocket.jpg", "hubble_deep_field.jpg")

T = TypeVar("T")


def start_server(log_name: str, **options: object) -> TritonServer:
    """A tritonserver on free loopback ports, its log under test-artifacts/."""
    return start_on_free_ports(ARTIFACTS / log_name, **options)


def infer(
    client: Any,
    module: ModuleType,
    images: list[bytes],
    model: str = "classify",
    outputs: tuple[str, ...] = OUTPUT_NAMES,
    **options: object,
) -> dict[str, np.ndarray]:
    """A raw tritonclient request (gRPC or HTTP `module`) with the images as rows."""
    requested = [module.InferRequestedOutput(name) for name in outputs]
    result = client.infer(model, [image_input(images, module)], outputs=requested, **options)
    return {name: result.as_numpy(name) for name in outputs}


def scrape(server: TritonServer, name: str, **labels: str) -> float:
    """The sum of a metric's series on the server's metrics endpoint, filtered by labels."""
    return metric_sum(server.metrics_text(), name, **labels)


def wait_for(
    probe: Callable[[], T], done: Callable[[T], bool], what: str, timeout_s: float = WAIT_S
) -> T:
    """Poll `probe()` until `done(value)`; return that value, or fail with the last one seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached after {timeout_s:.0f} s, last seen {value!r}")
        time.sleep(0.1)


def wait_for_metric(server: TritonServer, name: str, expected: float, **labels: str) -> None:
    """Wait until a counter's sum is exactly `expected`: Triton updates its metrics after it
    answers, so one read right after a request may miss it; a counter past `expected` fails."""
    value = wait_for(
        lambda: scrape(server, name, **labels),
        lambda seen: seen >= expected,
        f"{name}{labels or ''} reaching {expected:g}",
    )
    assert value == expected, f"{name}{labels or ''} is {value:g}, expected exactly {expected:g}"


def encode(image: Image.Image, image_format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **params)
    return buffer.getvalue()


def photo_bytes() -> dict[str, bytes]:
    """Real photos: scikit-image's bundled ones, re-encoded losslessly as PNG."""
    return sample_photos("PNG")


@functools.cache  # callers only read it
def photo_jpegs() -> dict[str, bytes]:
    """Real photos as JPEG at several sizes, from scikit-image's package data: its bundled JPEG
    files as they are, and photos re-encoded smaller, at full size and upscaled. retina (1411 px
    square) and astronaut at 2048 px have a shorter side >= 4 x 232 px, so preprocess decodes
    them reduced (`draft_factor`); chelsea at 225 x 150 is smaller than the resize."""
    from skimage import data  # noqa: PLC0415 (slow import, only where photos are needed)

    photos = {name: (Path(data.data_dir) / name).read_bytes() for name in SKIMAGE_JPEGS}
    for name, array, size, quality in [
        ("chelsea", data.chelsea(), (225, 150), 90),
        ("chelsea", data.chelsea(), (451, 300), 75),
        ("coffee", data.coffee(), (1200, 800), 85),
        ("astronaut", data.astronaut(), (2048, 2048), 90),
    ]:
        image = Image.fromarray(array).resize(size, Image.Resampling.LANCZOS)
        photos[f"{name}_{size[0]}x{size[1]}.jpg"] = encode(image, "JPEG", quality=quality)
    return photos


@functools.cache  # callers only read it
def generated_images() -> dict[str, bytes]:
    """Smooth synthetic scenes in several sizes and formats (JPEG, PNG, WebP, BMP, GIF)."""
    rng = np.random.default_rng(7)
    images = {}
    for width, height, image_format in [
        (640, 480, "JPEG"),
        (300, 800, "PNG"),
        (1024, 256, "WEBP"),
        (250, 250, "BMP"),
        (500, 375, "GIF"),
    ]:
        y, x = np.mgrid[0:height, 0:width]
        channels = [
            np.sin(x / rng.uniform(20, 80) + rng.uniform(0, 6)) * 127 + 128,
            np.cos(y / rng.uniform(20, 80)) * 127 + 128,
            (x + y) / (width + height) * 255,
        ]
        pixels = np.stack(channels, axis=-1).astype(np.uint8)
        name = f"generated_{width}x{height}.{image_format.lower()}"
        images[name] = encode(Image.fromarray(pixels), image_format)
    return images


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@functools.cache
def png_bomb(side: int = 30000) -> bytes:
    """A valid 1-bit PNG of side x side black pixels (~110 KB), built without the pixels."""
    row = b"\x00" + bytes((side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row * 1000) for _ in range(side // 1000))
    idat += compressor.compress(row * (side % 1000)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def reference_outputs(paths: list[Path], resize_size: int = 232) -> dict[str, np.ndarray]:
    """torchvision's reference tensors and ONNX Runtime's logits on them (the outside oracle).

    Runs `build_engines/reference.py` in the export venv, where torch lives.
    """
    out = ARTIFACTS / "reference.npz"
    ARTIFACTS.mkdir(exist_ok=True)
    done = subprocess.run(
        [
            str(EXPORT_PYTHON),
            str(PROJECT_ROOT / "build_engines" / "reference.py"),
            "--out",
            str(out),
            "--resize-size",
            str(resize_size),
            "--onnx",
            str(MODEL_REPOSITORY / "resnet50" / "1" / "model.onnx"),
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"build_engines/reference.py failed:\n{done.stderr[-3000:]}"
    with np.load(out, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def stub_processes(server: TritonServer) -> dict[int, str]:
    """The server's live Python-backend stub processes: {pid: model name}."""
    assert server.process is not None
    return {stub.pid: stub.model for stub in python_stubs(server.process.pid)}


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A /proc/<pid>/status memory field in KiB (VmRSS now, VmHWM the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def stop_process(process: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if it outlives `grace_s`; always reaped."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
