"""Opt-in INT8 variant: ONNX Runtime static quantisation (QDQ, per-channel weights) calibrated on
generated and sample photos, and its drift against FP32 on the real photos.

Runs in .venv-export (onnx + onnxruntime.quantization; no torch used):

    .venv-export/bin/python perf/quantize.py            # writes resnet50/1/model.int8.onnx
        [--images ../shared/images] [--report perf/out/int8.json]

Calibration uses only generated scenes and scikit-image-free synthetic photos plus the photos
in --calibration (default: none of the evaluation photos), so the drift is measured on images
the calibration never saw.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from common import ROOT, SHARED_IMAGES, model_inputs, photos
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from tricolor.imaging import normalise


def generated(count: int = 24) -> list[np.ndarray]:
    """Smooth synthetic scenes (gradients, blobs, stripes) as uint8 224 x 224 crops."""
    rng = np.random.default_rng(11)
    crops = []
    y, x = np.mgrid[0:224, 0:224].astype(np.float32)
    for _ in range(count):
        channels = []
        for _channel in range(3):
            fx, fy, phase = rng.uniform(5, 60), rng.uniform(5, 60), rng.uniform(0, 6.3)
            wave = np.sin(x / fx + phase) * np.cos(y / fy) * rng.uniform(40, 127)
            blob = rng.uniform(0, 255) * np.exp(
                -((x - rng.uniform(0, 224)) ** 2 + (y - rng.uniform(0, 224)) ** 2)
                / (2 * rng.uniform(20, 80) ** 2)
            )
            channels.append(np.clip(128 + wave + blob - 64, 0, 255))
        crops.append(np.stack(channels, axis=-1).astype(np.uint8))
    return crops


class Reader(CalibrationDataReader):
    def __init__(self, tensors: np.ndarray, name: str) -> None:
        self.items = iter([{name: tensor[None]} for tensor in tensors])

    def get_next(self):
        return next(self.items, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_dir = ROOT / "model_repository" / "resnet50" / "1"
    parser.add_argument("--model", type=Path, default=model_dir / "model.onnx")
    parser.add_argument("--out", type=Path, default=model_dir / "model.int8.onnx")
    parser.add_argument("--images", type=Path, default=SHARED_IMAGES)
    parser.add_argument(
        "--calibration-photos",
        type=int,
        default=6,
        help="the first N photos join the calibration set; drift is on the rest",
    )
    parser.add_argument("--report", type=Path, default=ROOT / "perf" / "out" / "int8.json")
    args = parser.parse_args()

    encoded = photos(args.images)
    names = list(encoded)
    tensors = model_inputs(encoded[name] for name in names)
    calibration = np.concatenate([normalise(generated()), tensors[: args.calibration_photos]])
    held_out = tensors[args.calibration_photos :]
    held_names = names[args.calibration_photos :]
    if len(held_out) == 0:
        held_out, held_names = tensors, names

    prepared = args.out.with_suffix(".prep.onnx")
    quant_pre_process(str(args.model), str(prepared), skip_symbolic_shape=True)
    input_name = ort.InferenceSession(str(args.model)).get_inputs()[0].name
    quantize_static(
        str(prepared),
        str(args.out),
        Reader(calibration, input_name),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    prepared.unlink(missing_ok=True)

    def logits(path: Path) -> tuple[np.ndarray, float]:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        session.run(None, {input_name: held_out[:1]})
        started = time.perf_counter()
        out = np.concatenate([session.run(None, {input_name: t[None]})[0] for t in held_out])
        return out, (time.perf_counter() - started) / len(held_out)

    def softmax(values: np.ndarray) -> np.ndarray:
        exp = np.exp(values - values.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    fp32, fp32_s = logits(args.model)
    int8, int8_s = logits(args.out)
    p32, p8 = softmax(fp32), softmax(int8)
    top1_32, top1_8 = p32.argmax(axis=1), p8.argmax(axis=1)
    top5 = [
        len(set(np.argsort(-a)[:5]) & set(np.argsort(-b)[:5])) / 5
        for a, b in zip(p32, p8, strict=True)
    ]
    cosine = (fp32 * int8).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(int8, axis=1))
    # how far INT8 moves the probability of FP32's top-1 class, per photo
    top1_score_diff = np.abs(p32.max(1) - p8[np.arange(len(p8)), top1_32])
    report = {
        "model": str(args.out.name),
        "size_mb": {"fp32": args.model.stat().st_size / 1e6, "int8": args.out.stat().st_size / 1e6},
        "calibration_images": int(len(calibration)),
        "held_out_photos": held_names,
        "top1_agreement": float((top1_32 == top1_8).mean()),
        "top5_overlap": float(np.mean(top5)),
        "top1_score_abs_diff_mean": float(top1_score_diff.mean()),
        "top1_score_abs_diff_max": float(top1_score_diff.max()),
        "logit_cosine_min": float(cosine.min()),
        "batch1_ms": {"fp32": 1000 * fp32_s, "int8": 1000 * int8_s},
        "speedup_batch1": fp32_s / int8_s,
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
