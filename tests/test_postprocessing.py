"""postprocess's pure functions, without a server."""

from __future__ import annotations

import numpy as np
import pytest

from tricolor.colours import RGB_PALETTE, RYB_PALETTE, dominant_colours, palette_scores
from tricolor.scores import softmax, top_k


def loop_scores(pixels: np.ndarray, palette) -> list[float]:
    """The seed's rule for one image, one colour and one pixel at a time."""
    scores = []
    for code in palette.hex_codes:
        colour = [int(code[i : i + 2], 16) for i in (1, 3, 5)]
        distances = [
            sum((float(pixel[c]) - colour[c]) ** 2 for c in range(3)) ** 0.5
            for row in pixels
            for pixel in row
        ]
        scores.append(sum(distances) / len(distances))
    return scores


@pytest.mark.parametrize("palette", [RGB_PALETTE, RYB_PALETTE], ids=["rgb", "ryb"])
def test_vectorised_rule_equals_a_plain_loop(palette) -> None:
    rng = np.random.default_rng(3)
    shapes = [(16, 9), (4, 16), (16, 16)]
    images = [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape in shapes]
    padded = np.zeros((3, 16, 16, 3), np.uint8)
    for row, image in enumerate(images):
        padded[row, : image.shape[0], : image.shape[1]] = image
    scores = palette_scores(padded, np.array(shapes, dtype=np.int32), palette)
    for row, image in enumerate(images):
        np.testing.assert_allclose(scores[row], loop_scores(image, palette), rtol=1e-12)
    codes, _ = dominant_colours(padded, np.array(shapes, dtype=np.int32), palette)
    assert codes == [palette.hex_codes[int(np.argmin(loop_scores(i, palette)))] for i in images]


def test_palettes_are_the_contracts() -> None:
    assert len(RGB_PALETTE.hex_codes) == len(RGB_PALETTE.names) == 12
    assert len(RYB_PALETTE.hex_codes) == len(RYB_PALETTE.names) == 12
    assert RGB_PALETTE.rgb[1].tolist() == [255, 128, 0]


def test_softmax_is_stable_and_normalised() -> None:
    probabilities = softmax(np.array([[1000.0, 0.0, -1000.0], [1.0, 1.0, 1.0]], np.float32))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert probabilities[0, 0] == pytest.approx(1.0)


def test_top_k_orders_descending_with_ties_by_index() -> None:
    indices, scores = top_k(np.array([[0.1, 0.3, 0.3, 0.2, 0.1]], np.float32), 3)
    assert indices.tolist() == [[1, 2, 3]]
    assert scores[0].tolist() == pytest.approx([0.3, 0.3, 0.2])
