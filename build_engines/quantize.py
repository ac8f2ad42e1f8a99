"""Opt-in INT8 variant: ONNX Runtime static quantisation (QDQ, per-channel weights) calibrated on
synthetic scenes and a few photos, and its drift against FP32 on the other photos.

Runs in .venv-export (onnx + onnxruntime.quantization; no torch used, no tricolor installed).
Its inputs are the served model's own input tensors, made in .venv by perf.inputs (the
`preprocess` code, the served config's sizes); `make int8` runs both steps:

    .venv/bin/python -m perf.inputs --out perf/out/int8-inputs --scenes 24
    .venv-export/bin/python build_engines/quantize.py --tensors perf/out/int8-inputs/tensors.npz
        [--report perf/out/int8.json]          # writes model_repository/resnet50/1/model.int8.onnx
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

ROOT = Path(__file__).resolve().parents[1]


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
    parser.add_argument(
        "--tensors", type=Path, required=True, help="from `python -m perf.inputs --scenes N`"
    )
    parser.add_argument(
        "--calibration-photos",
        type=int,
        default=4,
        help="the first N photos join the calibration set; drift is on the rest",
    )
    parser.add_argument("--report", type=Path, default=ROOT / "perf" / "out" / "int8.json")
    args = parser.parse_args()

    with np.load(args.tensors, allow_pickle=False) as inputs:
        names, tensors = [str(name) for name in inputs["names"]], inputs["tensors"]
        if "scenes" not in inputs:
            raise SystemExit(f"{args.tensors}: no synthetic scenes (perf.inputs --scenes N)")
        scenes = inputs["scenes"]
    calibration = np.concatenate([scenes, tensors[: args.calibration_photos]])
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
