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


def palette_scores(thumbnails: np.ndarray, sizes: np.ndarray, palette: Palette) -> np.ndarray:
    """[N, len(palette)]: per image, the mean Euclidean RGB distance of its pixels to each colour.

    `thumbnails` is uint8 [N, S, S, 3] zero-padded; `sizes` [N, 2] gives each valid (h, w).
    Squared distances come from one matrix product, |p|^2 - 2 p.c + |c|^2, in float64.
    """
    count, side = thumbnails.shape[0], thumbnails.shape[1]
    rows = np.arange(side)
    valid = (rows[None, :, None] < sizes[:, 0, None, None]) & (
        rows[None, None, :] < sizes[:, 1, None, None]
    )
    pixels = thumbnails.reshape(count, side * side, 3).astype(np.float64)
    colours = palette.rgb.astype(np.float64)
    squared = pixels @ (-2.0 * colours.T)  # [N, S*S, K], then in place: no temporaries
    squared += np.einsum("npc,npc->np", pixels, pixels)[:, :, None]
    squared += np.einsum("kc,kc->k", colours, colours)
    distances = np.sqrt(np.maximum(squared, 0.0, out=squared), out=squared)
    weights = valid.reshape(count, side * side).astype(np.float64)
    return np.einsum("npk,np->nk", distances, weights) / np.maximum(weights.sum(axis=1), 1)[:, None]


def dominant_colours(
    thumbnails: np.ndarray, sizes: np.ndarray, palette: Palette
) -> tuple[list[str], list[str]]:
    """Hex codes and names of the palette colour with the lowest mean distance, per image."""
    winners = palette_scores(thumbnails, sizes, palette).argmin(axis=1)
    return [palette.hex_codes[i] for i in winners], [palette.names[i] for i in winners]
