"""The palettes and the dominant colour: pure numpy, shared by `postprocess`, the tests and the
catalogue."""

from __future__ import annotations

from dataclasses import dataclass

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
# blacks belong to no palette colour
MIN_SATURATION = 0.25
MIN_VALUE = 0.2


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
    """
    distances = np.sqrt(_squared_distances(thumbnails, palette))
    weights = _valid_pixels(thumbnails, sizes).astype(np.float64)
    return np.einsum("npk,np->nk", distances, weights) / np.maximum(weights.sum(axis=1), 1)[:, None]


def palette_shares(thumbnails: np.ndarray, sizes: np.ndarray, palette: Palette) -> np.ndarray:
    """float32 [N, len(palette)]: per image, the fraction of its pixels that are chromatic (HSV
    saturation >= 0.25, value >= 0.2) and nearest (Euclidean RGB) to each palette colour.

    The shares sum to the image's chromatic fraction; ties go to the earlier palette colour.
    """
    count, side = thumbnails.shape[0], thumbnails.shape[1]
    valid = _valid_pixels(thumbnails, sizes)
    pixels = thumbnails.reshape(count, side * side, 3)
    brightest = pixels.max(axis=2).astype(np.float64)
    spread = brightest - pixels.min(axis=2)
    # HSV: value = max / 255, saturation = (max - min) / max (0 for black)
    saturation = np.divide(spread, brightest, out=np.zeros_like(spread), where=brightest > 0)
    chromatic = valid & (saturation >= MIN_SATURATION) & (brightest / 255 >= MIN_VALUE)
    nearest = _squared_distances(thumbnails, palette).argmin(axis=2)
    colours = len(palette.hex_codes)
    flat = (np.arange(count)[:, None] * colours + nearest)[chromatic]
    counts = np.bincount(flat, minlength=count * colours).reshape(count, colours)
    return (counts / np.maximum(valid.sum(axis=1), 1)[:, None]).astype(np.float32)


def dominant_colours(
    thumbnails: np.ndarray, sizes: np.ndarray, palette: Palette
) -> tuple[list[str], list[str]]:
    """Hex codes and names of the palette colour with the lowest mean distance, per image."""
    winners = palette_scores(thumbnails, sizes, palette).argmin(axis=1)
    return [palette.hex_codes[i] for i in winners], [palette.names[i] for i in winners]
