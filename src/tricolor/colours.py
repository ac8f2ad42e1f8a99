"""The palettes and the dominant colour: pure numpy, shared by `postprocess`, the tests and the
catalogue."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class Palette:
    hex_codes: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def rgb(self) -> np.ndarray:
        """[len, 3] float64 RGB values of the palette colours."""
        return np.array([[int(code[i : i + 2], 16) for i in (1, 3, 5)] for code in self.hex_codes])


RGB_PALETTE = Palette(
    hex_codes=(
        "#FF0000", "#FF8000", "#FFFF00", "#80FF00", "#00FF00", "#00FF80",
        "#00FFFF", "#0080FF", "#0000FF", "#8000FF", "#FF00FF", "#FF0080",
    ),
    names=(
        "red", "orange", "yellow", "chartreuse", "green", "spring green",
        "cyan", "azure", "blue", "violet", "magenta", "rose",
    ),
)  # fmt: skip
RYB_PALETTE = Palette(
    hex_codes=(
        "#FE2712", "#FC600A", "#FB9902", "#FCCC1A", "#FEFE33", "#B2D732",
        "#66B032", "#347C98", "#0247FE", "#4424D6", "#8601AF", "#C21460",
    ),
    names=(
        "red", "red-orange", "orange", "yellow-orange", "yellow", "yellow-green",
        "green", "blue-green", "blue", "blue-violet", "violet", "red-violet",
    ),
)  # fmt: skip


# a pixel counts towards the colour shares only when it is chromatic (HSV): greys, whites and
# blacks belong to no palette colour (fractions: the thresholds are compared exactly, in integers)
MIN_SATURATION = Fraction(1, 4)
MIN_VALUE = Fraction(1, 5)


def _squared_distances(thumbnails: np.ndarray, palette: Palette) -> np.ndarray:
    """[N, S*S, K] squared Euclidean RGB distances of every pixel to every palette colour.

    One matrix product, |p|^2 - 2 p.c + |c|^2, in float64, then in place: no temporaries.
    """
    count, side = thumbnails.shape[0], thumbnails.shape[1]
    pixels = thumbnails.reshape(count, side * side, 3).astype(np.float64)
    colours = palette.rgb.astype(np.float64)
    squared = pixels @ (-2.0 * colours.T)
    squared += np.einsum("npc,npc->np", pixels, pixels)[:, :, None]
    squared += np.einsum("kc,kc->k", colours, colours)
    return np.maximum(squared, 0.0, out=squared)


def _valid_pixels(thumbnails: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """[N, S*S] bool: the pixel lies inside the image's (h, w), not in the zero padding."""
    count, side = thumbnails.shape[0], thumbnails.shape[1]
    rows = np.arange(side)
    valid = (rows[None, :, None] < sizes[:, 0, None, None]) & (
        rows[None, None, :] < sizes[:, 1, None, None]
    )
    return valid.reshape(count, side * side)


def palette_scores(thumbnails: np.ndarray, sizes: np.ndarray, palette: Palette) -> np.ndarray:
    """[N, len(palette)]: per image, the mean Euclidean RGB distance of its pixels to each colour.

    `thumbnails` is uint8 [N, S, S, 3] zero-padded; `sizes` [N, 2] gives each valid (h, w).
    The seed's rule in float64: `colours` decides in float32 and asks this for near ties.
    """
    distances = np.sqrt(_squared_distances(thumbnails, palette))
    weights = _valid_pixels(thumbnails, sizes).astype(np.float64)
    return np.einsum("npk,np->nk", distances, weights) / np.maximum(weights.sum(axis=1), 1)[:, None]


def palette_shares(thumbnails: np.ndarray, sizes: np.ndarray, palette: Palette) -> np.ndarray:
    """float32 [N, len(palette)]: per image, the fraction of its pixels that are chromatic (HSV
    saturation >= 0.25, value >= 0.2) and nearest (Euclidean RGB) to each palette colour.

    The shares sum to the image's chromatic fraction; ties go to the earlier palette colour.
    """
    return colours(thumbnails, sizes, (palette,))[0].shares


def dominant_colours(
    thumbnails: np.ndarray, sizes: np.ndarray, palette: Palette
) -> tuple[list[str], list[str]]:
    """Hex codes and names of the palette colour with the lowest mean distance, per image."""
    answer = colours(thumbnails, sizes, (palette,))[0]
    return answer.hex_codes, answer.names


@dataclass(frozen=True)
class PaletteColours:
    """One palette's answer for a batch of thumbnails (what `postprocess` sends)."""

    palette: Palette
    winners: np.ndarray  # [N] index of the dominant colour (the seed's mean-distance rule)
    shares: np.ndarray  # float32 [N, len(palette)], as `palette_shares`

    @property
    def hex_codes(self) -> list[str]:
        return [self.palette.hex_codes[i] for i in self.winners]

    @property
    def names(self) -> list[str]:
        return [self.palette.names[i] for i in self.winners]


# the float32 mean distances are within ~1e-6 (relative) of the exact ones: sqrt rounds each
# distance by <= 2^-24 and the pairwise sum over <= 128 * 128 pixels adds <= ~15 such errors;
# an image whose two best colours are closer than this margin is decided in float64 instead
NEAR_TIE = 1e-5
NEAREST_KEY = 16  # more than any palette's colours (see `colours`)


def colours(
    thumbnails: np.ndarray, sizes: np.ndarray, palettes: tuple[Palette, ...]
) -> list[PaletteColours]:
    """The dominant colour and the colour shares of every palette, from one distance matrix.

    Per image, only its valid (h, w) pixels: the squared distances to all the palettes'
    colours in one float32 [colours, pixels] array (exact: integers below 2^24), whose
    nearest colour gives the shares and whose square roots, taken once, give the mean-distance
    scores. The answers equal the float64 rule's (near ties are decided by `palette_scores`).
    """
    stacked = np.concatenate([palette.rgb for palette in palettes]).astype(np.float32)
    minus_twice, squared_norms = -2.0 * stacked, np.einsum("kc,kc->k", stacked, stacked)
    sizes_of = [len(palette.hex_codes) for palette in palettes]
    if max(sizes_of) > NEAREST_KEY:
        raise ValueError(f"a palette of more than {NEAREST_KEY} colours")
    bounds = np.cumsum([0, *sizes_of])
    # the nearest colour by a min over keys, not an argmin (numpy's argmin over 12 is 5x
    # slower): key = squared distance * 16 + index, exact in float32 (< 2^24), ties to the
    # lower index
    ranks = np.concatenate([np.arange(size) for size in sizes_of]).astype(np.float32)[:, None]
    key_scales = NEAREST_KEY * minus_twice
    key_offsets = NEAREST_KEY * squared_norms + ranks[:, 0]
    count = len(thumbnails)
    scores = np.zeros((count, len(stacked)), np.float32)
    shares = np.zeros((count, len(stacked)), np.float32)
    for row in range(count):
        height, width = (int(value) for value in sizes[row])
        channels = thumbnails[row, :height, :width].reshape(-1, 3).T  # [3, pixels]
        if not channels.size:
            continue
        red, green, blue = channels.astype(np.int32)
        brightest = np.maximum(np.maximum(red, green), blue)
        spread = brightest - np.minimum(np.minimum(red, green), blue)
        # HSV: value = max / 255, saturation = (max - min) / max; exact in integers
        saturated = spread * MIN_SATURATION.denominator >= brightest * MIN_SATURATION.numerator
        bright = brightest * MIN_VALUE.denominator >= 255 * MIN_VALUE.numerator
        chromatic = saturated & bright
        # key = 16 (|c|^2 - 2 c.p + |p|^2) + index: the squared distance (exact in float32:
        # integers < 2^24) with the colour's index in its low bits, built as outer products
        # (numpy's own loops: a BLAS matmul with an inner dimension of 3 spins a second thread)
        values = channels.astype(np.float32)
        keys = np.add.outer(key_offsets, NEAREST_KEY * np.einsum("cp,cp->p", values, values))
        product = np.empty_like(keys)
        for channel in range(3):
            keys += np.multiply.outer(key_scales[:, channel], values[channel], out=product)
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            nearest = keys[start:stop].min(axis=0)[chromatic].astype(np.int32) % NEAREST_KEY
            shares[row, start:stop] = np.bincount(nearest, minlength=stop - start) / len(red)
        # sqrt(16 d^2) = 4 d exactly; the mean along the contiguous axis is summed pairwise
        keys -= ranks
        scores[row] = np.sqrt(keys, out=keys).mean(axis=1) / 4
    answers = []
    for palette, start, stop in zip(palettes, bounds[:-1], bounds[1:], strict=True):
        own = scores[:, start:stop]
        winners = own.argmin(axis=1)
        best_two = np.sort(own, axis=1)[:, :2]
        near = np.flatnonzero(best_two[:, 1] - best_two[:, 0] <= NEAR_TIE * best_two[:, 0])
        if len(near):
            exact = palette_scores(thumbnails[near], sizes[near], palette)
            winners[near] = exact.argmin(axis=1)
        answers.append(PaletteColours(palette, winners, shares[:, start:stop].copy()))
    return answers
