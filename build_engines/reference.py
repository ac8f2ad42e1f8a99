"""Reference preprocessing (the parity oracle): torchvision's own ResNet-50 eval transforms.

Run in the export venv:

    .venv-export/bin/python build_engines/reference.py --out ref.npz [--resize-size 232]
        [--onnx model.onnx] IMAGE...

Each image is loaded as torchvision's reference scripts do (PIL open, EXIF transpose,
`convert("RGB")`) and passed through `ResNet50_Weights.IMAGENET1K_V2.transforms()` with the
resize size overridden. The npz holds `tensors` float32 [N, 3, 224, 224] and `paths`, plus
`logits` float32 [N, num_classes] from ONNX Runtime when `--onnx` is given.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

LOG = logging.getLogger("reference")
CROP_SIZE = 224


def load_rgb(path: Path) -> Image.Image:
    """Decode like torchvision's reference scripts: EXIF orientation, then RGB."""
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def preprocess(paths: list[Path], resize_size: int) -> np.ndarray:
    """Stack the reference tensors of the images, float32 [N, 3, 224, 224]."""
    import torch
    from torchvision.transforms._presets import ImageClassification

    transform = ImageClassification(crop_size=CROP_SIZE, resize_size=resize_size)
    with torch.inference_mode():
        return torch.stack([transform(load_rgb(path)) for path in paths]).numpy()


def onnx_logits(model: Path, tensors: np.ndarray) -> np.ndarray:
    """Logits of the exported model on the reference tensors, through ONNX Runtime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": tensors})[0]


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--out", type=Path, required=True, help="npz file to write")
    parser.add_argument("--resize-size", type=int, default=232, help="232 (V2) or 256 (V1)")
    parser.add_argument("--onnx", type=Path, help="also store this model's logits")
    args = parser.parse_args(argv)

    tensors = preprocess(args.images, args.resize_size)
    arrays = {"tensors": tensors, "paths": np.array([str(p) for p in args.images])}
    if args.onnx is not None:
        arrays["logits"] = onnx_logits(args.onnx, tensors)
    np.savez(args.out, **arrays)
    LOG.info("wrote %s: %s", args.out, ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
