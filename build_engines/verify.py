"""The served FP16 plan against the FP32 ONNX on the sample photos (GPU host, the serving venv).

    .venv/bin/python build_engines/verify.py [--url localhost:8001] [--tolerance 0.02]

The photos (scikit-image's bundled ones) are preprocessed as `preprocess` does; the same
tensors go to the served `resnet50` over gRPC and through `model.onnx` with ONNX Runtime in
FP32 on the CPU. Prints a table per photo (top-1 of each, the largest softmax difference) and
exits 1 when a top-1 differs or a difference exceeds the tolerance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient

from tricolor.imaging import Limits, normalise, preprocess
from tricolor.samples import sample_photos
from tricolor.settings import MODEL_REPOSITORY, default_triton_url
from tricolor.verification import SOFTMAX_TOLERANCE, agreement_table, compare_logits

RESIZE_SIZE = 232  # preprocess's resize_size (IMAGENET1K_V2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=default_triton_url(), help="Triton gRPC host:port")
    parser.add_argument(
        "--onnx", type=Path, default=MODEL_REPOSITORY / "resnet50" / "1" / "model.onnx"
    )
    parser.add_argument("--tolerance", type=float, default=SOFTMAX_TOLERANCE)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    photos = sample_photos()
    tensors = normalise(
        [
            preprocess(data, RESIZE_SIZE, 64, Limits(), draft_factor=0).crop
            for data in photos.values()
        ]
    )
    with grpcclient.InferenceServerClient(args.url) as client:
        platform = client.get_model_config("resnet50").config
        backend = platform.platform or platform.backend
        tensor = grpcclient.InferInput("input", list(tensors.shape), "FP32")
        tensor.set_data_from_numpy(tensors)
        served = client.infer("resnet50", [tensor]).as_numpy("logits")
    session = ort.InferenceSession(str(args.onnx), providers=["CPUExecutionProvider"])
    reference = session.run(["logits"], {"input": tensors})[0]
    rows = compare_logits(list(photos), served.astype(np.float32), reference)
    print(f"resnet50 served by {backend} at {args.url} vs {args.onnx.name} (FP32, ONNX Runtime)")
    print(agreement_table(rows, args.tolerance))
    return 0 if all(row.passed(args.tolerance) for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
