"""Probabilities and top-k from logits: pure numpy, shared by `postprocess` and the tests."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable for any logit range), returned as float32."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return (exponentials / exponentials.sum(axis=1, keepdims=True)).astype(np.float32)


def top_k(probabilities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices [N, k] (most probable first, ties by lower index) and their probabilities."""
    k = min(k, probabilities.shape[1])
    indices = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return indices.astype(np.int32), np.take_along_axis(probabilities, indices, axis=1)
