"""What every `tricolor` command prints the same way: the colour swatch, the random-weights
warning, the hint when no server answers. Below `tricolor.cli` and `tricolor.catalogue.commands`,
which both use it."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from tricolor.settings import SERVER_ADDRESS_RULE
from tricolor.weights import random_weights_warning


def swatch(hex_code: str, name: str) -> Text:
    return Text.assemble(("  ", f"on {hex_code.lower()}"), f" {hex_code} {name}")


def warn_about_weights(weights: set[str]) -> None:
    """On stderr, whatever the output format: `--json` on stdout stays parseable."""
    for warning in sorted(filter(None, map(random_weights_warning, weights))):
        Console(stderr=True).print(
            Text(f"tricolor: WARNING: {warning}", style="bold yellow"), soft_wrap=True
        )


def no_server_hint(url: str, protocol: str) -> str:
    return (
        f"tricolor: no ready Triton with `classify` at {url} ({protocol}); start one with "
        f"`make serve`. Where clients look: {SERVER_ADDRESS_RULE}"
    )
