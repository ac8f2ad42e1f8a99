"""What the UI shows, as plain strings and dicts: no Gradio here, so the tests can import it."""

from __future__ import annotations

import html
from pathlib import Path

from tricolor.catalogue.search import Hit, Page, Query
from tricolor.catalogue.store import describe_url, sqlite_path
from tricolor.client import Classification, ModelState, ModelTimes
from tricolor.colours import RGB_PALETTE, RYB_PALETTE, Palette
from tricolor.contract import COMPOSING_MODELS, MODEL_NAME
from tricolor.weights import is_random, random_weights_warning

EXAMPLE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def example_images(cache_dir: Path) -> list[Path]:
    """scikit-image's bundled photos (package files, no download), written once as JPEG."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = [cache_dir / f"{name}.jpg" for name in EXAMPLE_PHOTOS]
    if not all(path.exists() for path in paths):
        from PIL import Image  # noqa: PLC0415 (only on the first run)
        from skimage import data  # noqa: PLC0415 (slow import, only on the first run)

        for name, path in zip(EXAMPLE_PHOTOS, paths, strict=True):
            Image.fromarray(getattr(data, name)()).save(path, quality=92)
    return paths


def confidences(result: Classification) -> dict[str, float]:
    """`gr.Label`'s value: label -> probability, most probable first."""
    return dict(zip(result.labels, result.scores, strict=True))


def api_payload(result: Classification) -> dict[str, object]:
    """The CLI's `--json` element with `name` for `path`: gradio_client would fetch a `path`."""
    payload = result.to_json()
    return {"name": payload.pop("path"), **payload}


def swatch(hex_code: str, name: str, palette: str) -> str:
    return (
        '<div class="tricolor-swatch" style="display:flex;align-items:center;gap:12px;'
        'margin:6px 0">'
        f'<span style="display:inline-block;width:48px;height:48px;border-radius:8px;'
        f'border:1px solid #8888;background:{html.escape(hex_code)}"></span>'
        f"<span><b>{palette}</b> <code>{html.escape(hex_code)}</code> "
        f"{html.escape(name)}</span></div>"
    )


def weights_warning(weights: str) -> str:
    """A loud line when the served weights are random, else nothing."""
    warning = random_weights_warning(weights)
    return f"⚠ **{warning[0].upper()}{warning[1:]}**" if warning else ""


def _ms(total_ns: int, requests: int) -> str:
    return f"{total_ns / requests / 1e6:.1f}" if requests else "–"


def breakdown_markdown(delta: dict[str, ModelTimes]) -> str:
    """Triton's per-model queue / compute split, averaged per request over one interval."""
    rows = [
        "| model | requests | queue | compute input | compute infer | compute output | total |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for name in COMPOSING_MODELS:
        times = delta.get(name, ModelTimes())
        parts = (
            times.queue_ns,
            times.compute_input_ns,
            times.compute_infer_ns,
            times.compute_output_ns,
            times.success_ns,
        )
        cells = " | ".join(_ms(part, times.requests) for part in parts)
        rows.append(f"| {name} | {times.requests} | {cells} |")
    ensemble = delta.get(MODEL_NAME, ModelTimes())
    rows.append(
        f"| **{MODEL_NAME}** (ensemble) | {ensemble.requests} | | | | | "
        f"**{_ms(ensemble.success_ns, ensemble.requests)}** |"
    )
    return "\n".join(rows)


def details_markdown(result: Classification, delta: dict[str, ModelTimes]) -> str:
    """Second look, round trip, weights and the server's own per-model breakdown."""
    second = (
        "yes: top-1 was below `second_look_below`, the flipped image was averaged in"
        if result.second_look
        else "no"
    )
    random = " ⚠ random: the labels mean nothing" if is_random(result.weights) else ""
    return "\n".join(
        [
            f"**Second look:** {second}  ",
            f"**Round trip (gRPC):** {result.latency_ms:.1f} ms  ",
            f"**Weights:** `{result.weights}`{random}",
            "",
            breakdown_markdown(delta),
            "",
            "<small>Milliseconds per request: server-side averages from Triton's statistics "
            "API over the interval of this call (other clients' requests in it count too)."
            "</small>",
        ]
    )


def status_markdown(
    url: str,
    *,
    ready: bool,
    version: str = "",
    models: list[ModelState] | None = None,
    weights: str = "",
    error: str = "",
) -> str:
    """One status line: ready or not, the loaded models and versions, the weights."""
    if error:
        return f"**Triton at `{url}` is not reachable:** {html.escape(error)}"
    loaded = ", ".join(
        f"{model.name} v{model.version}" for model in models or [] if model.state == "READY"
    )
    line = (
        f"**Triton {version} at `{url}`: {'ready' if ready else 'not ready'}** · "
        f"models: {loaded or 'none loaded'} · weights: `{weights or 'unknown'}`"
    )
    warning = weights_warning(weights)
    return f"{line}\n\n{warning}" if warning else line


def batch_table_html(results: list[Classification]) -> str:
    """One row per image: top label and score, both colours, or the server's reason."""
    rows = []
    for result in results:
        name = html.escape(Path(result.path).name)
        if result.error is not None:
            rows.append(
                f"<tr><td>{name}</td><td colspan='3'>refused: {html.escape(result.error)}</td></tr>"
            )
            continue
        rows.append(
            f"<tr><td>{name}</td><td>{html.escape(result.labels[0])} "
            f"({result.scores[0]:.3f})</td>"
            f"<td>{swatch(result.color_rgb, result.color_rgb_name, 'RGB')}</td>"
            f"<td>{swatch(result.color_ryb, result.color_ryb_name, 'RYB')}</td></tr>"
        )
    header = "<tr><th>image</th><th>top label</th><th>RGB</th><th>RYB</th></tr>"
    return f"<table>{header}{''.join(rows)}</table>"


def gallery_caption(result: Classification) -> str:
    return (
        f"{result.labels[0]} ({result.scores[0]:.2f}) · "
        f"{result.color_rgb} {result.color_rgb_name} · {result.color_ryb} {result.color_ryb_name}"
    )


def shares_html(shares: list[float], palette: Palette, label: str) -> str:
    """The colour shares as one stacked bar in palette order; the rest (greys) left blank."""
    segments = "".join(
        f'<span title="{html.escape(name)} {share:.0%}" style="display:inline-block;height:14px;'
        f'width:{share * 100:.2f}%;background:{code}"></span>'
        for code, name, share in zip(palette.hex_codes, palette.names, shares, strict=True)
        if share > 0
    )
    chromatic = sum(shares)
    top = sorted(zip(shares, palette.names, strict=True), reverse=True)[:3]
    named = ", ".join(f"{name} {share:.0%}" for share, name in top if share > 0)
    return (
        f'<div class="tricolor-shares" style="margin:4px 0 8px"><small><b>{label} shares</b> '
        f"({chromatic:.0%} of the pixels are chromatic){': ' + named if named else ''}</small>"
        '<div style="display:flex;width:100%;border:1px solid #8888;border-radius:4px;'
        f'overflow:hidden;line-height:0">{segments}</div></div>'
    )


def colours_html(result: Classification) -> str:
    """Both dominant colours as swatches with hex code and name, and the colour shares."""
    return (
        swatch(result.color_rgb, result.color_rgb_name, "RGB")
        + swatch(result.color_ryb, result.color_ryb_name, "RYB")
        + shares_html(result.color_rgb_shares, RGB_PALETTE, "RGB")
        + shares_html(result.color_ryb_shares, RYB_PALETTE, "RYB")
    )


# ---- the Catalogue tab ----

ANY = ""
DOMINANT, AT_LEAST = "dominant colour", "contains at least"
PALETTE_NAMES = {"RGB": RGB_PALETTE, "RYB": RYB_PALETTE}


def catalogue_location(url: str) -> str:
    """Where the catalogue lives, as its user knows it: a SQLite file as a path (the home folder
    as `~`, so the default reads `~/.local/share/tricolor/catalogue.db`), another database as its
    URL without the password."""
    database = sqlite_path(url)
    if database is None:
        return describe_url(url)
    home = Path.home()
    return f"~/{database.relative_to(home)}" if database.is_relative_to(home) else str(database)


def class_choices(counts: list[tuple[str, int]]) -> list[tuple[str, str]]:
    """The dropdown's (shown, value) pairs: every top-1 label held, with its count."""
    return [("any class", ANY), *((f"{name} ({count})", name) for name, count in counts)]


def colour_choices(palette_name: str) -> list[tuple[str, str]]:
    palette = PALETTE_NAMES[palette_name]
    return [
        ("any colour", ANY),
        *(
            (f"{name} {code}", code)
            for code, name in zip(palette.hex_codes, palette.names, strict=True)
        ),
    ]


def palette_css() -> str:
    """Each colour option of the Catalogue tab shows its swatch (matched by its value)."""
    rules = []
    for palette in PALETTE_NAMES.values():
        for code in palette.hex_codes:
            rules.append(
                f'.catalogue-colour input[value="{code}"] {{ appearance: none; width: 18px; '
                f"height: 18px; border-radius: 4px; background: {code}; border: 1px solid #8888; }}"
                f'.catalogue-colour input[value="{code}"]:checked {{ outline: 3px solid #333; }}'
            )
    return "\n".join(rules)


def catalogue_query(
    label: str, palette_name: str, colour: str, mode: str, share: float, count: int
) -> Query:
    colour_filter = {palette_name.lower(): colour} if colour else {}
    return Query(
        label=label or None,
        min_share=share if colour and mode == AT_LEAST else None,
        limit=int(count),
        **colour_filter,
    )


def catalogue_caption(hit: Hit) -> str:
    copies = f" · +{len(hit.duplicates)} copies" if hit.duplicates else ""
    return (
        f"{hit.labels[0]} ({hit.scores[0]:.2f}) · {hit.color_rgb} · {hit.color_ryb} · "
        f"{Path(hit.path).name}{copies}"
    )


def catalogue_summary(page: Page, query: Query, held: str | None, hidden: int = 0) -> str:
    """ "N of M matches": N the pictures shown, M the matches less those `hidden` (files gone
    from the disk since the last `tricolor label`, which marks them missing); `held`, where
    nothing matches, how many pictures the catalogue holds."""
    shown, total = len(page.hits) - hidden, page.matches(hidden)
    gone = (
        f" ({hidden} not found on disk: `tricolor label` their folder again to mark them missing)"
        if hidden
        else ""
    )
    if not shown:
        return (
            f"**Nothing matches** {html.escape(query.describe())}"
            + (f" (the catalogue holds {held} pictures)" if held is not None else "")
            + f"{gone}."
        )
    return (
        f"**{shown} of {total} matches** for {html.escape(query.describe())}, "
        f"top-1 score first{gone}."
    )
