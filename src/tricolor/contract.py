"""The `classify` interface (../shared/CONTRACT.md) in one place: what `postprocess` answers and
what the clients read. `tests/unit/test_contract.py` holds the model configurations to it."""

from __future__ import annotations

from dataclasses import dataclass

MODEL_NAME = "classify"
IMAGE_INPUT = "IMAGE"
COMPOSING_MODELS = ("preprocess", "resnet50", "postprocess")


@dataclass(frozen=True)
class Output:
    """One output of `classify` (and of `postprocess`, which produces it), per image."""

    name: str
    datatype: str  # Triton's wire type: BYTES, FP32, INT32, BOOL
    dims: tuple[int, ...]  # per image, as the configs declare them (-1: top_k long)

    @property
    def listed(self) -> bool:
        """Several values per image (top-k, palette shares) rather than one."""
        return self.dims != (1,)

    @property
    def field(self) -> str:
        """Its name in `tricolor.client.Classification` and in the CLI's `--json`."""
        return self.name.lower()


PALETTE_SIZE = 12

LABELS = Output("LABELS", "BYTES", (-1,))
SCORES = Output("SCORES", "FP32", (-1,))
CLASS_IDS = Output("CLASS_IDS", "INT32", (-1,))
COLOR_RGB = Output("COLOR_RGB", "BYTES", (1,))
COLOR_RYB = Output("COLOR_RYB", "BYTES", (1,))
COLOR_RGB_NAME = Output("COLOR_RGB_NAME", "BYTES", (1,))
COLOR_RYB_NAME = Output("COLOR_RYB_NAME", "BYTES", (1,))
# the fraction of the image's pixels that are chromatic and nearest each palette colour
COLOR_RGB_SHARES = Output("COLOR_RGB_SHARES", "FP32", (PALETTE_SIZE,))
COLOR_RYB_SHARES = Output("COLOR_RYB_SHARES", "FP32", (PALETTE_SIZE,))
SECOND_LOOK = Output("SECOND_LOOK", "BOOL", (1,))
WEIGHTS = Output("WEIGHTS", "BYTES", (1,))

OUTPUTS = (
    LABELS,
    SCORES,
    CLASS_IDS,
    COLOR_RGB,
    COLOR_RYB,
    COLOR_RGB_NAME,
    COLOR_RYB_NAME,
    COLOR_RGB_SHARES,
    COLOR_RYB_SHARES,
    SECOND_LOOK,
    WEIGHTS,
)
OUTPUT_NAMES = tuple(output.name for output in OUTPUTS)
