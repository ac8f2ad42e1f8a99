"""Checks a GPU user runs against the live stack (`make gpu-check`), as pure functions.

`compare_logits`: the served resnet50 (the FP16 plan) against the FP32 ONNX on the same
tensors, per photo. `contract_problems`: every output of one `classify` answer against the
serving contract. Both return what they saw, so a failure prints its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tricolor.colours import RGB_PALETTE, RYB_PALETTE
from tricolor.scores import softmax

# FP16 against FP32 on real photos: the same top-1, and no class probability moving by more
# than 0.02 (FP16 ResNet-50 plans typically stay within a few 1e-3)
SOFTMAX_TOLERANCE = 0.02
CONTRACT_OUTPUTS = ("LABELS", "SCORES", "CLASS_IDS", "COLOR_RGB", "COLOR_RYB")
HEX_CODE = re.compile(r"#[0-9A-F]{6}")


@dataclass(frozen=True)
class PhotoAgreement:
    name: str
    served_top1: int
    reference_top1: int
    max_softmax_difference: float

    def passed(self, tolerance: float) -> bool:
        return self.served_top1 == self.reference_top1 and self.max_softmax_difference <= tolerance


def compare_logits(
    names: list[str], served: np.ndarray, reference: np.ndarray
) -> list[PhotoAgreement]:
    """Top-1 of each and the largest |softmax difference|, photo by photo."""
    if served.shape != reference.shape or len(names) != len(served):
        raise ValueError(f"shapes differ: served {served.shape}, reference {reference.shape}")
    differences = np.abs(softmax(served) - softmax(reference)).max(axis=1)
    return [
        PhotoAgreement(name, int(served_row.argmax()), int(reference_row.argmax()), float(diff))
        for name, served_row, reference_row, diff in zip(
            names, served, reference, differences, strict=True
        )
    ]


def agreement_table(rows: list[PhotoAgreement], tolerance: float) -> str:
    width = max([len("photo"), *(len(row.name) for row in rows)])
    lines = [f"{'photo':<{width}}  served  fp32 ONNX  top-1  max |softmax diff|  verdict"]
    for row in rows:
        lines.append(
            f"{row.name:<{width}}  {row.served_top1:>6}  {row.reference_top1:>9}  "
            f"{'same' if row.served_top1 == row.reference_top1 else 'DIFF':>5}  "
            f"{row.max_softmax_difference:>18.2e}  {'ok' if row.passed(tolerance) else 'FAIL'}"
        )
    agreeing = sum(row.served_top1 == row.reference_top1 for row in rows)
    worst = max((row.max_softmax_difference for row in rows), default=0.0)
    lines.append(
        f"top-1 agreement {agreeing}/{len(rows)}, largest softmax difference {worst:.2e} "
        f"(tolerance {tolerance:g})"
    )
    return "\n".join(lines)


def _texts(values: np.ndarray) -> list[str]:
    return [value.decode() if isinstance(value, bytes) else str(value) for value in values.ravel()]


def contract_problems(outputs: dict[str, np.ndarray], rows: int, num_labels: int) -> list[str]:
    """What in one `classify` answer of `rows` images breaks the serving contract."""
    missing = [name for name in CONTRACT_OUTPUTS if name not in outputs]
    if missing:
        return [f"outputs missing: {missing}"]
    labels, scores, class_ids = outputs["LABELS"], outputs["SCORES"], outputs["CLASS_IDS"]
    problems = []
    if not (labels.shape == scores.shape == class_ids.shape and labels.shape[0] == rows):
        problems.append(
            f"LABELS {labels.shape}, SCORES {scores.shape}, CLASS_IDS {class_ids.shape}: "
            f"expected the same [{rows}, K]"
        )
    if scores.dtype != np.float32 or class_ids.dtype != np.int32:
        problems.append(f"SCORES is {scores.dtype}, CLASS_IDS is {class_ids.dtype}")
    if scores.size and not ((scores >= 0).all() and (scores <= 1).all()):
        problems.append(f"SCORES outside [0, 1]: {scores.min()} .. {scores.max()}")
    if scores.ndim == 2 and (np.diff(scores, axis=1) > 0).any():
        problems.append("SCORES are not descending")
    if class_ids.size and not ((class_ids >= 0).all() and (class_ids < num_labels).all()):
        problems.append(f"CLASS_IDS outside [0, {num_labels})")
    if any(not label for label in _texts(labels)):
        problems.append("an empty label")
    for name, palette in (("COLOR_RGB", RGB_PALETTE), ("COLOR_RYB", RYB_PALETTE)):
        codes = _texts(outputs[name])
        if outputs[name].shape != (rows, 1):
            problems.append(f"{name} has shape {outputs[name].shape}, expected ({rows}, 1)")
        problems += [
            f"{name} {code!r} is not a palette colour"
            for code in codes
            if not HEX_CODE.fullmatch(code) or code not in palette.hex_codes
        ]
    return problems
