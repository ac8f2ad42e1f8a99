"""The Gradio UI (ui/app.py, run from .venv-ui) against the real server: its API through
gradio_client, its page in a real headless chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.helpers import ARTIFACTS, encode, photo_bytes, stop_process
from tricolor.client import Classification, ModelTimes, TricolorClient
from tricolor.colours import RGB_PALETTE
from tricolor.launcher import TritonServer
from tricolor.settings import MODEL_REPOSITORY, PROJECT_ROOT, free_ports
from ui import views

UI_PYTHON = PROJECT_ROOT / ".venv-ui" / "bin" / "python"
UI_APP = PROJECT_ROOT / "ui" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")
README_SCREENSHOT = PROJECT_ROOT / "docs" / "ui.png"
# what of an element is hidden at the right: beyond the window, or clipped by an ancestor
CLIPPED_JS = """element => {
    const clipped = [];
    const right = element.getBoundingClientRect().right;
    if (right > document.documentElement.clientWidth) clipped.push(`right edge at ${right} px`);
    for (let node = element; node; node = node.parentElement) {
        if (node.scrollWidth > node.clientWidth)
            clipped.push(`${node.tagName}#${node.id}: ${node.scrollWidth} > ${node.clientWidth}`);
    }
    return clipped;
}"""


def start_ui(
    triton_url: str,
    log_name: str,
    temp_dir: Path,
    db_url: str | None = None,
    home: Path | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """The app as `make demo` runs it, on a free port; returns once it serves its page."""
    if not UI_PYTHON.exists():
        pytest.fail(f"{UI_PYTHON} is missing: run `make setup`")
    (port,) = free_ports(1)
    ARTIFACTS.mkdir(exist_ok=True)
    db_url = db_url or f"sqlite:///{temp_dir / 'catalogue.db'}"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(temp_dir), "TRICOLOR_DB": db_url}
    if home is not None:
        env["HOME"] = str(home)
    with (ARTIFACTS / log_name).open("wb") as log:
        process = subprocess.Popen(
            [str(UI_PYTHON), str(UI_APP), "--port", str(port), "--triton-url", triton_url],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the UI exited with code {process.returncode}; see {log_name}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return process, url
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    process.terminate()
    pytest.fail(f"the UI did not answer at {url} within 120 s")


@pytest.fixture(scope="module")
def ui_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The UI's home folder, its catalogue where a user's is: the page (and docs/ui.png) shows
    `~/.local/share/tricolor/catalogue.db`, not a test run's temporary path."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def catalogue_db(
    server: TritonServer, tmp_path_factory: pytest.TempPathFactory, ui_home: Path
) -> str:
    """A catalogue labelled by `tricolor label` before the UI starts: solid colours, photos."""
    folder = tmp_path_factory.mktemp("collection")
    for name, colour in (("red.png", "#FF0000"), ("blue.png", "#0000FF")):
        (folder / name).write_bytes(encode(Image.new("RGB", (80, 60), colour), "PNG"))
    for name in ("coffee.png", "rocket.png"):
        (folder / name).write_bytes(photo_bytes()[name])
    database = ui_home / ".local" / "share" / "tricolor" / "catalogue.db"
    database.parent.mkdir(parents=True)
    db_url = f"sqlite:///{database}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tricolor.cli",
            "label",
            str(folder),
            "--db",
            db_url,
            "--url",
            server.grpc_url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return db_url


@pytest.fixture(scope="module")
def ui_url(
    server: TritonServer,
    tmp_path_factory: pytest.TempPathFactory,
    catalogue_db: str,
    ui_home: Path,
) -> Iterator[str]:
    process, url = start_ui(
        server.grpc_url, "ui.log", tmp_path_factory.mktemp("gradio"), catalogue_db, ui_home
    )
    yield url
    stop_process(process)


def search_json(db_url: str, *args: str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "tricolor.cli", "search", "--db", db_url, "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def ui_client(ui_url: str) -> Client:
    return Client(ui_url, verbose=False, download_files=False)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for name, data in photo_bytes().items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


def _result(**fields: object) -> Classification:
    base: dict[str, object] = {
        "path": "cat.png",
        "labels": ["tabby", "tiger cat"],
        "scores": [0.75, 0.25],
        "class_ids": [281, 282],
        "color_rgb": "#FF8000",
        "color_ryb": "#FC600A",
        "color_rgb_name": "orange",
        "color_ryb_name": "red-orange",
        "color_rgb_shares": [0.0, 0.5, *[0.0] * 10],
        "color_ryb_shares": [0.0, 0.25, 0.25, *[0.0] * 9],
        "weights": "imagenet1k_v2",
        "latency_ms": 12.5,
    }
    return Classification(**{**base, **fields})


def test_views_show_colours_labels_and_breakdown() -> None:
    result = _result()
    assert views.confidences(result) == {"tabby": 0.75, "tiger cat": 0.25}
    colours = views.colours_html(result)
    assert "#FF8000" in colours and "orange" in colours and "#FC600A" in colours
    assert "(50% of the pixels are chromatic): orange 50%" in colours
    assert "red-orange 25%, orange 25%" in colours
    delta = {"resnet50": ModelTimes(requests=2, compute_infer_ns=30_000_000)}
    details = views.details_markdown(result, delta)
    assert "| resnet50 | 2 | 0.0 | 0.0 | 15.0 | 0.0 | 0.0 |" in details
    assert "| preprocess | 0 | – |" in details  # no traffic: no average
    assert "12.5 ms" in details and "mean nothing" not in details
    assert views.api_payload(result)["name"] == "cat.png"
    assert "path" not in views.api_payload(result)  # gradio_client would fetch it as a file


def test_views_warn_about_random_weights() -> None:
    for weights in ("random", "random_fallback"):
        assert "mean nothing" in views.details_markdown(_result(weights=weights), {})
        assert "mean nothing" in views.status_markdown("h:1", ready=True, weights=weights)
    assert views.weights_warning("imagenet1k_v2") == ""
    down = views.status_markdown("h:1", ready=False, error="connection refused")
    assert "not reachable" in down and "connection refused" in down


@pytest.mark.integration
def test_classify_api_equals_tritonclient(
    ui_client: Client, client: TricolorClient, photos: dict[str, Path]
) -> None:
    for name in ("chelsea.png", "coffee.png"):
        label, colours, details, payload = ui_client.predict(
            handle_file(str(photos[name])), api_name="/classify"
        )
        direct = client.classify_one(photos[name].read_bytes(), name)
        assert direct.error is None
        for field in ("labels", "class_ids", "color_rgb", "color_ryb", "second_look", "weights"):
            assert payload[field] == getattr(direct, field), field
        assert payload["color_rgb_name"] == direct.color_rgb_name
        assert payload["color_ryb_name"] == direct.color_ryb_name
        assert payload["scores"] == pytest.approx(direct.scores, abs=1e-6)
        assert label["label"] == direct.labels[0]
        assert [item["label"] for item in label["confidences"]] == direct.labels
        assert direct.color_rgb in colours and direct.color_ryb in colours
        assert "| resnet50 |" in details and "Round trip" in details


@pytest.mark.integration
def test_classify_api_shows_the_servers_reason(ui_client: Client, tmp_path: Path) -> None:
    huge = tmp_path / "huge.png"  # 60 megapixels of black: a few kB, above max_decoded_pixels
    huge.write_bytes(encode(Image.fromarray(np.zeros((6000, 10000), np.uint8)), "PNG"))
    with pytest.raises(AppError, match="refused this image: .*megapixels"):
        ui_client.predict(handle_file(str(huge)), api_name="/classify")


@pytest.mark.integration
def test_several_images_at_once(
    ui_client: Client, client: TricolorClient, photos: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos["rocket.png"].read_bytes()[:200])
    files = [photos["chelsea.png"], photos["astronaut.png"], broken]
    gallery, table = ui_client.predict(
        [handle_file(str(path)) for path in files], api_name="/classify_many"
    )
    assert len(gallery) == 2  # the refused image is listed in the table only
    for path in files[:2]:
        direct = client.classify_one(path.read_bytes(), path.name)
        assert direct.color_rgb in table and direct.labels[0] in table
    assert "broken.jpg" in table and "refused" in table


@pytest.mark.integration
def test_catalogue_api_answers_as_tricolor_search(ui_client: Client, catalogue_db: str) -> None:
    everything = search_json(catalogue_db)
    top = everything[0]["labels"][0]
    for label, palette, colour, mode, share in [
        ("", "RGB", "#FF0000", views.DOMINANT, 0.2),
        (top, "RYB", "", views.DOMINANT, 0.2),
        ("", "RYB", "#0247FE", views.AT_LEAST, 0.5),
    ]:
        rgb, ryb = (colour, "") if palette == "RGB" else ("", colour)
        gallery, summary = ui_client.predict(
            label, palette, rgb, ryb, mode, share, 9, api_name="/catalogue"
        )
        flags = (["--label", label] if label else []) + (
            [f"--{palette.lower()}", colour] if colour else []
        )
        flags += ["--min-share", str(share)] if colour and mode == views.AT_LEAST else []
        expected = search_json(catalogue_db, *flags)
        assert expected, flags  # each query has an answer in this collection
        names = [item["caption"].rsplit(" · ", 1)[-1] for item in gallery]
        assert names == [Path(hit["path"]).name for hit in expected], flags
        assert f"{len(expected)} of {len(expected)} matches" in summary
    used = {hit["color_rgb"] for hit in everything}
    unused = next(code for code in RGB_PALETTE.hex_codes if code not in used)
    nothing, summary = ui_client.predict(
        "", "RGB", unused, "", views.DOMINANT, 0.2, 9, api_name="/catalogue"
    )
    assert nothing == [] and "Nothing matches" in summary


@pytest.mark.integration
def test_server_down_is_a_message_not_a_traceback(
    tmp_path_factory: pytest.TempPathFactory, photos: dict[str, Path]
) -> None:
    (dead_port,) = free_ports(1)
    process, url = start_ui(
        f"127.0.0.1:{dead_port}", "ui-server-down.log", tmp_path_factory.mktemp("gradio")
    )
    try:
        down = Client(url, verbose=False, download_files=False)
        assert "not reachable" in down.predict(api_name="/status")
        with pytest.raises(AppError, match="Triton is not reachable at 127.0.0.1"):
            down.predict(handle_file(str(photos["chelsea.png"])), api_name="/classify")
    finally:
        stop_process(process)


def _readme_png(screenshot: bytes) -> bytes:
    """The screenshot as a small palette PNG, for the README."""
    image = Image.open(io.BytesIO(screenshot)).convert("RGB")
    image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
        buffer, format="PNG", optimize=True
    )
    return buffer.getvalue()


@pytest.mark.integration
@pytest.mark.browser
def test_browser_upload_shows_labels_and_colours(
    ui_url: str, client: TricolorClient, photos: dict[str, Path], catalogue_db: str
) -> None:
    from playwright.sync_api import expect, sync_playwright  # noqa: PLC0415 (browser tests only)

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does)")
    photo = photos["chelsea.png"]
    direct = client.classify_one(photo.read_bytes(), photo.name)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(ui_url)
            expect(page.locator("#status")).to_contain_text("ready", timeout=60_000)
            page.locator("#image input[type=file]").set_input_files(str(photo))
            page.locator("#classify").click()
            colours = page.locator("#colours")
            expect(colours).to_contain_text(direct.color_rgb, timeout=60_000)
            expect(colours).to_contain_text(direct.color_ryb)
            labels = page.locator("#labels")
            for label in direct.labels:
                expect(labels).to_contain_text(label)
            expect(page.locator("#details")).to_contain_text("Round trip")
            assert page.locator("#details table").evaluate(CLIPPED_JS) == []  # 1280 px wide
            # what the export recorded, not what the server says (that is what is tested)
            provenance = MODEL_REPOSITORY / "postprocess" / "weights.json"
            weights = json.loads(provenance.read_text())["weights"]
            if weights in ("random", "random_fallback"):
                expect(page.locator("#status")).to_contain_text(
                    f"ResNet-50 runs seeded RANDOM weights (weights={weights}): its labels "
                    "mean nothing."
                )
            else:
                expect(page.locator("#status")).not_to_contain_text("mean nothing")
            # where the catalogue is, as a user knows it (docs/ui.png shows it)
            where = page.locator("#add-to-catalogue")
            expect(where).to_contain_text("(~/.local/share/tricolor/catalogue.db)")
            expect(where).not_to_contain_text("/tmp/")
            screenshot = page.screenshot(full_page=True)

            # add to catalogue: the same photo again, kept, then found in the Catalogue tab
            page.locator("#add-to-catalogue input[type=checkbox]").check()
            page.locator("#classify").click()
            kept = f"{hashlib.sha256(photo.read_bytes()).hexdigest()}.png"
            expect(page.locator("#catalogue-added")).to_contain_text(kept, timeout=60_000)
            page.get_by_role("tab", name="Catalogue").click()
            page.locator("#catalogue-palette").get_by_label("RGB").check()
            colours = page.locator("#catalogue-rgb-colour")
            colours.get_by_label(f"{direct.color_rgb_name} {direct.color_rgb}").check()
            page.locator("#catalogue-find").click()
            matches = page.locator("#catalogue-gallery")
            expect(matches).to_contain_text(kept, timeout=60_000)
            found = search_json(catalogue_db, "--rgb", direct.color_rgb)
            expect(page.locator("#catalogue-summary")).to_contain_text(
                f"{len(found)} of {len(found)} matches"  # not "Nothing matches"
            )
            swatch = colours.locator("input[value='#FF0000']")
            assert swatch.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 0, 0)"
            catalogue_screenshot = page.screenshot(full_page=True)
            # the photo's class from the dropdown (with its count), a colour nobody has
            page.locator("#catalogue-class input").click()
            page.get_by_role("option", name=f"{direct.labels[0]} (").click()
            used = {hit["color_rgb"] for hit in search_json(catalogue_db, "--limit", "100")}
            unused = next(i for i, code in enumerate(RGB_PALETTE.hex_codes) if code not in used)
            colour_name = f"{RGB_PALETTE.names[unused]} {RGB_PALETTE.hex_codes[unused]}"
            colours.get_by_label(colour_name).check()
            page.locator("#catalogue-find").click()
            expect(page.locator("#catalogue-summary")).to_contain_text("Nothing matches")
            expect(page.locator("#catalogue-summary")).to_contain_text(direct.labels[0])
        finally:
            browser.close()
    (ARTIFACTS / "ui.png").write_bytes(screenshot)
    (ARTIFACTS / "ui-catalogue.png").write_bytes(catalogue_screenshot)
    if os.environ.get("UPDATE_SCREENSHOT"):
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        README_SCREENSHOT.write_bytes(_readme_png(screenshot))
