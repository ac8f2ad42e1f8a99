"""Where the served weights came from (`weights.json`, written by the export beside the labels):
the `WEIGHTS` value every answer carries, and the one wording of the random-weights warning."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PROVENANCE_FILE = "weights.json"
# what `WEIGHTS` says when the export had no pretrained weights: the labels mean nothing
RANDOM_WEIGHTS = ("random", "random_fallback")
REEXPORT_HINT = (
    "put resnet50-11ad3fa6.pth in ~/.cache/torch/hub/checkpoints/ (or allow the download), run "
    "'.venv-export/bin/python build_engines/export.py --force' and restart the server"
)


def is_random(weights: str) -> bool:
    """Whether a `WEIGHTS` value names random weights (the GPU image's fallback note may follow
    the name: `random [FALLBACK ...]`)."""
    return weights.split(" ", 1)[0] in RANDOM_WEIGHTS


def random_weights_warning(weights: str) -> str:
    """The warning when `weights` (a `WEIGHTS` value) is random, else "": the export log, the
    server log, the CLI and the UI say the same."""
    if not is_random(weights):
        return ""
    return (
        f"ResNet-50 runs seeded RANDOM weights (weights={weights}): its labels mean nothing. "
        f"For ImageNet weights, {REEXPORT_HINT}."
    )


@dataclass(frozen=True)
class WeightsProvenance:
    weights: str
    warning: str | None = None

    @classmethod
    def read(cls, directory: Path) -> WeightsProvenance:
        path = directory / PROVENANCE_FILE
        if not path.exists():
            return cls("unknown")
        recorded = json.loads(path.read_text())
        return cls(str(recorded.get("weights", "unknown")), recorded.get("warning"))
