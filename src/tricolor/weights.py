"""What the `WEIGHTS` output says about the served weights, and the one warning about them."""

from __future__ import annotations

# what the WEIGHTS output says when the export had no pretrained weights: the labels mean nothing
RANDOM_WEIGHTS = ("random", "random_fallback")


def random_weights_warning(weights: str) -> str:
    """The warning the CLI and the UI show when the served weights are random, else ""."""
    if weights not in RANDOM_WEIGHTS:
        return ""
    return (
        f"the server runs seeded random weights ({weights}): these labels mean nothing. "
        "Re-export with ImageNet weights (`.venv-export/bin/python build_engines/export.py "
        "--weights imagenet --force`, needs the torchvision checkpoint) and restart the server."
    )
