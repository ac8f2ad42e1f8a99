"""postprocess's pure functions, without a server."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import scipy.special

from tricolor.colours import (
    RGB_PALETTE,
    RYB_PALETTE,
    colours,
    dominant_colours,
    palette_scores,
    palette_shares,
)
from tricolor.imaging import Limits, pad_thumbnails, preprocess
from tricolor.samples import sample_photos
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


# written out from the contract's table (CONTRACT.md, "Dominant colour"), not from the package
CONTRACT_RGB = """#FF0000 #FF8000 #FFFF00 #80FF00 #00FF00 #00FF80 #00FFFF #0080FF
#0000FF #8000FF #FF00FF #FF0080"""
CONTRACT_RYB = """#FE2712 #FC600A #FB9902 #FCCC1A #FEFE33 #B2D732 #66B032 #347C98
#0247FE #4424D6 #8601AF #C21460"""


@pytest.mark.parametrize(
    ("palette", "contract"),
    [(RGB_PALETTE, CONTRACT_RGB), (RYB_PALETTE, CONTRACT_RYB)],
    ids=["rgb", "ryb"],
)
def test_palettes_are_the_contracts(palette, contract: str) -> None:
    assert palette.hex_codes == tuple(contract.split())
    assert len(palette.names) == len(set(palette.names)) == 12


# the palettes' RGB values and names, written out by hand (not derived from the hex codes)
LITERAL_RGB = [
    (255, 0, 0), (255, 128, 0), (255, 255, 0), (128, 255, 0), (0, 255, 0), (0, 255, 128),
    (0, 255, 255), (0, 128, 255), (0, 0, 255), (128, 0, 255), (255, 0, 255), (255, 0, 128),
]  # fmt: skip
LITERAL_RYB = [
    (254, 39, 18), (252, 96, 10), (251, 153, 2), (252, 204, 26), (254, 254, 51), (178, 215, 50),
    (102, 176, 50), (52, 124, 152), (2, 71, 254), (68, 36, 214), (134, 1, 175), (194, 20, 96),
]  # fmt: skip
RGB_NAMES = [
    "red", "orange", "yellow", "chartreuse", "green", "spring green",
    "cyan", "azure", "blue", "violet", "magenta", "rose",
]  # fmt: skip
RYB_NAMES = [
    "red", "red-orange", "orange", "yellow-orange", "yellow", "yellow-green",
    "green", "blue-green", "blue", "blue-violet", "violet", "red-violet",
]  # fmt: skip


@pytest.mark.parametrize(
    ("palette", "triples", "names"),
    [(RGB_PALETTE, LITERAL_RGB, RGB_NAMES), (RYB_PALETTE, LITERAL_RYB, RYB_NAMES)],
    ids=["rgb", "ryb"],
)
def test_palette_values_and_names_are_the_literal_ones(palette, triples, names) -> None:
    assert [tuple(colour) for colour in palette.rgb.tolist()] == triples
    assert list(palette.names) == names


def test_softmax_is_the_textbook_one() -> None:
    """Against a literal case and scipy's softmax in float64 (an outside implementation): a
    softmax with a temperature, or one that drops the shift wrongly, still sums to 1."""
    np.testing.assert_allclose(
        softmax(np.array([[1.0, 2.0, 3.0]], np.float32))[0],
        [0.0900306, 0.2447285, 0.6652410],
        atol=1e-6,
    )
    logits = np.random.default_rng(5).normal(0, 4, (8, 1000)).astype(np.float32)
    expected = scipy.special.softmax(logits.astype(np.float64), axis=1)
    np.testing.assert_allclose(softmax(logits), expected, rtol=1e-5, atol=1e-9)


def test_softmax_is_stable_and_normalised() -> None:
    probabilities = softmax(np.array([[1000.0, 0.0, -1000.0], [1.0, 1.0, 1.0]], np.float32))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert probabilities[0, 0] == pytest.approx(1.0)


def test_top_k_orders_descending_with_ties_by_index() -> None:
    indices, scores = top_k(np.array([[0.1, 0.3, 0.3, 0.2, 0.1]], np.float32), 3)
    assert indices.tolist() == [[1, 2, 3]]
    assert scores[0].tolist() == pytest.approx([0.3, 0.3, 0.2])


def loop_shares(pixels: np.ndarray, palette) -> list[float]:
    """The contract's colour shares for one image, one pixel at a time (colorsys for HSV)."""
    colours = [[int(code[i : i + 2], 16) for i in (1, 3, 5)] for code in palette.hex_codes]
    counts = [0] * len(colours)
    total = 0
    for row in pixels:
        for pixel in row:
            total += 1
            red, green, blue = (int(channel) for channel in pixel)
            _, saturation, value = colorsys.rgb_to_hsv(red / 255, green / 255, blue / 255)
            if saturation < 0.25 or value < 0.2:
                continue
            distances = [
                sum((channel - colour[c]) ** 2 for c, channel in enumerate((red, green, blue)))
                for colour in colours
            ]
            counts[distances.index(min(distances))] += 1
    return [count / total for count in counts]


@pytest.mark.parametrize("palette", [RGB_PALETTE, RYB_PALETTE], ids=["rgb", "ryb"])
def test_vectorised_shares_equal_a_plain_loop(palette) -> None:
    rng = np.random.default_rng(11)
    shapes = [(16, 9), (4, 16), (16, 16), (1, 1)]
    images = [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape in shapes]
    images[2][:8] = 128  # a grey half: chromatic fraction about 1/2
    images[3][:] = (51, 38, 38)  # value exactly 0.2, saturation exactly 0.2549: counted
    padded = np.zeros((len(shapes), 16, 16, 3), np.uint8)
    for row, image in enumerate(images):
        padded[row, : image.shape[0], : image.shape[1]] = image
    shares = palette_shares(padded, np.array(shapes, dtype=np.int32), palette)
    assert shares.dtype == np.float32 and shares.shape == (len(shapes), 12)
    for row, image in enumerate(images):
        np.testing.assert_allclose(shares[row], loop_shares(image, palette), rtol=1e-6)
    assert shares[3].sum() == pytest.approx(1.0)
    assert 0.4 < shares[2].sum() < 0.6


def test_shares_leave_out_greys_whites_and_blacks() -> None:
    red_on_grey = np.zeros((1, 8, 8, 3), np.uint8)
    red_on_grey[0, :, :] = (128, 128, 128)
    red_on_grey[0, :2, :] = (250, 10, 10)  # a quarter of the pixels
    red_on_grey[0, 2, :] = (255, 255, 255)
    red_on_grey[0, 3, :] = (0, 0, 0)
    shares = palette_shares(red_on_grey, np.array([[8, 8]], np.int32), RGB_PALETTE)[0]
    assert shares[RGB_PALETTE.names.index("red")] == pytest.approx(0.25)
    assert shares.sum() == pytest.approx(0.25)


# found by searching pixel pairs: in float32 the mean distances of these images' two best
# colours (~1e-7 apart, relative) come out the wrong way round; the float64 rule decides them
NEAR_TIES = [
    (RGB_PALETTE, [[208, 18, 46], [196, 114, 47]]),
    (RYB_PALETTE, [[238, 20, 12], [232, 114, 9]]),
]


@pytest.mark.parametrize(("palette", "pixels"), NEAR_TIES, ids=["rgb", "ryb"])
def test_near_ties_are_decided_as_the_plain_loop_decides(palette, pixels) -> None:
    image = np.array([pixels], np.uint8)
    padded = np.zeros((1, 4, 4, 3), np.uint8)
    padded[0, :1, :2] = image
    codes, _ = dominant_colours(padded, np.array([[1, 2]], np.int32), palette)
    assert codes == [palette.hex_codes[int(np.argmin(loop_scores(image, palette)))]]


def float64_shares(pixels: np.ndarray, palette) -> np.ndarray:
    """The shares as the contract words them, in float64 on the integer pixels (colorsys works
    on values scaled by 1/255 and rounds pixels lying exactly at saturation 1/4 either way)."""
    flat = pixels.reshape(-1, 3).astype(np.float64)
    brightest, darkest = flat.max(axis=1), flat.min(axis=1)
    saturation = np.divide(brightest - darkest, brightest, where=brightest > 0, out=0 * flat[:, 0])
    chromatic = (saturation >= 0.25) & (brightest / 255 >= 0.2)
    squared = ((flat[:, None, :] - palette.rgb[None, :, :]) ** 2).sum(axis=2)
    counts = np.bincount(squared.argmin(axis=1)[chromatic], minlength=len(palette.hex_codes))
    return (counts / len(flat)).astype(np.float32)


def test_both_palettes_from_one_pass_equal_the_rules_on_photos() -> None:
    """What postprocess sends (`colours` on both palettes at once) on real photos' thumbnails
    as preprocess makes them: the float64 mean-distance rule's winner and the shares, exactly."""
    photos = sample_photos()
    made = [preprocess(data, 232, 64, Limits()).thumbnail for data in photos.values()]
    thumbnails, sizes = pad_thumbnails(made, 64)
    answers = colours(thumbnails, sizes, (RGB_PALETTE, RYB_PALETTE))
    for answer, palette in zip(answers, (RGB_PALETTE, RYB_PALETTE), strict=True):
        exact = palette_scores(thumbnails, sizes, palette).argmin(axis=1)
        assert answer.hex_codes == [palette.hex_codes[i] for i in exact]
        assert answer.shares.dtype == np.float32
        for row, thumbnail in enumerate(made):
            expected = float64_shares(thumbnail, palette)
            np.testing.assert_array_equal(answer.shares[row], expected)
