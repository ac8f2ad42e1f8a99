"""Inputs from real photos: perf_analyzer's `--input-data` JSON, and the ready tensors.

- `classify.json`: one encoded photo per request. A BYTES element in perf_analyzer's `b64`
  form is the *serialised* tensor: a 4-byte little-endian length, then the bytes, all
  base64-encoded (perf_analyzer's input_data.md).
- `resnet50.json`: the ready FP32 tensor of the same photos (what `preprocess` hands on), so
  `resnet50` alone can be loaded without the decode and the ensemble hops.
- `tensors.npz`: the same tensors with the photos' `names` (and, with `--scenes N`, N smooth
  synthetic scenes as `scenes`): what build_engines/quantize.py calibrates and checks the INT8
  model on, in .venv-export, where tricolor is not installed.

    .venv/bin/python -m perf.inputs [--images DIR] [--out perf/out/inputs] [--limit N]
        [--scenes N]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from .common import OUT_DIR, model_inputs, photos


def serialised_bytes(data: bytes) -> str:
    """One BYTES element as perf_analyzer's `b64` expects it."""
    return base64.b64encode(struct.pack("<I", len(data)) + data).decode()


def scenes(count: int, side: int = 256) -> list[bytes]:
    """Smooth synthetic scenes (waves and a blob per channel) as PNGs, for INT8 calibration."""
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    encoded = []
    for _ in range(count):
        channels = []
        for _channel in range(3):
            fx, fy, phase = rng.uniform(5, 60), rng.uniform(5, 60), rng.uniform(0, 6.3)
            wave = np.sin(x / fx + phase) * np.cos(y / fy) * rng.uniform(40, 127)
            blob = rng.uniform(0, 255) * np.exp(
                -((x - rng.uniform(0, side)) ** 2 + (y - rng.uniform(0, side)) ** 2)
                / (2 * rng.uniform(20, 80) ** 2)
            )
            channels.append(np.clip(128 + wave + blob - 64, 0, 255))
        buffer = io.BytesIO()
        Image.fromarray(np.stack(channels, axis=-1).astype(np.uint8)).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded


def generate(
    encoded: dict[str, bytes], out: Path, limit: int | None = None, scene_count: int = 0
) -> dict[str, Path]:
    selected = dict(list(encoded.items())[:limit])
    out.mkdir(parents=True, exist_ok=True)
    classify = {
        "data": [
            {"IMAGE": {"b64": serialised_bytes(data), "shape": [1]}} for data in selected.values()
        ]
    }
    tensors = model_inputs(selected.values())
    resnet50 = {
        "data": [
            {"input": {"b64": base64.b64encode(tensor.tobytes()).decode(), "shape": [3, 224, 224]}}
            for tensor in tensors
        ]
    }
    paths = {
        "classify": out / "classify.json",
        "resnet50": out / "resnet50.json",
        "tensors": out / "tensors.npz",
    }
    paths["classify"].write_text(json.dumps(classify))
    paths["resnet50"].write_text(json.dumps(resnet50))
    extra = {"scenes": model_inputs(scenes(scene_count))} if scene_count else {}
    np.savez(paths["tensors"], names=np.array(list(selected)), tensors=tensors, **extra)
    (out / "photos.txt").write_text(
        "".join(f"{name}\t{len(data)}\n" for name, data in selected.items())
    )
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="a folder of photos (default: scikit-image's)")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "inputs")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--scenes", type=int, default=0, help="synthetic scenes for calibration")
    args = parser.parse_args()
    for name, path in generate(photos(args.images), args.out, args.limit, args.scenes).items():
        print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
