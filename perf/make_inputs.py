"""perf_analyzer input data from real photos (JSON, `--input-data`).

- `classify.json`: one encoded photo per request. A BYTES element in perf_analyzer's `b64`
  form is the *serialised* tensor: a 4-byte little-endian length, then the bytes, all
  base64-encoded (perf_analyzer's input_data.md).
- `resnet50.json`: the ready FP32 tensor of the same photos (what `preprocess` hands on), so
  `resnet50` alone can be loaded without the decode and the ensemble hops.

    .venv/bin/python perf/make_inputs.py [--images DIR] [--out perf/out/inputs] [--limit N]
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
from pathlib import Path

from common import OUT_DIR, SHARED_IMAGES, model_inputs, photos


def serialised_bytes(data: bytes) -> str:
    """One BYTES element as perf_analyzer's `b64` expects it."""
    return base64.b64encode(struct.pack("<I", len(data)) + data).decode()


def generate(images: Path, out: Path, limit: int | None = None) -> dict[str, Path]:
    selected = dict(list(photos(images).items())[:limit])
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
    paths = {"classify": out / "classify.json", "resnet50": out / "resnet50.json"}
    paths["classify"].write_text(json.dumps(classify))
    paths["resnet50"].write_text(json.dumps(resnet50))
    (out / "photos.txt").write_text(
        "".join(f"{name}\t{len(data)}\n" for name, data in selected.items())
    )
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=SHARED_IMAGES)
    parser.add_argument("--out", type=Path, default=OUT_DIR / "inputs")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    for name, path in generate(args.images, args.out, args.limit).items():
        print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
