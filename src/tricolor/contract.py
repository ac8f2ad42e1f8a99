"""The `classify` interface (../shared/CONTRACT.md) in one place: what `postprocess` answers and
what the clients read. `tests/test_contract.py` holds the model configurations to it."""

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
    listed: bool  # several values per image (top-k, palette shares) rather than one

    @property
    def field(self) -> str:
        """Its name in `tricolor.client.Classification` and in the CLI's `--json`."""
        return self.name.lower()


LABELS = Output("LABELS", "BYTES", listed=True)
SCORES = Output("SCORES", "FP32", listed=True)
CLASS_IDS = Output("CLASS_IDS", "INT32", listed=True)
COLOR_RGB = Output("COLOR_RGB", "BYTES", listed=False)
COLOR_RYB = Output("COLOR_RYB", "BYTES", listed=False)
COLOR_RGB_NAME = Output("COLOR_RGB_NAME", "BYTES", listed=False)
COLOR_RYB_NAME = Output("COLOR_RYB_NAME", "BYTES", listed=False)
SECOND_LOOK = Output("SECOND_LOOK", "BOOL", listed=False)
WEIGHTS = Output("WEIGHTS", "BYTES", listed=False)

OUTPUTS = (
    LABELS,
    SCORES,
    CLASS_IDS,
    COLOR_RGB,
    COLOR_RYB,
    COLOR_RGB_NAME,
    COLOR_RYB_NAME,
    SECOND_LOOK,
    WEIGHTS,
)
OUTPUT_NAMES = tuple(output.name for output in OUTPUTS)
