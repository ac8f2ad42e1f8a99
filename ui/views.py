"""What the UI shows, as plain strings and dicts: no Gradio here, so the tests can import it."""

from __future__ import annotations

import html
from pathlib import Path

from tricolor.client import COMPOSING_MODELS, MODEL_NAME, Classification, ModelState, ModelTimes
from tricolor.weights import RANDOM_WEIGHTS, random_weights_warning

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


def colours_html(result: Classification) -> str:
    """Both dominant colours as swatches with hex code and name."""
    return swatch(result.color_rgb, result.color_rgb_name, "RGB") + swatch(
        result.color_ryb, result.color_ryb_name, "RYB"
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
    random = " ⚠ random: the labels mean nothing" if result.weights in RANDOM_WEIGHTS else ""
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
