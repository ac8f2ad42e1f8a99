"""tricolor in the browser: a thin Gradio app; every inference runs in Triton (gRPC).

.venv-ui/bin/python ui/app.py                # UI on 127.0.0.1:UI_PORT, Triton at TRITON_URL
.venv-ui/bin/python ui/app.py --with-server .venv/bin/tricolor  # + embedded Triton (make demo)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

import gradio as gr
from PIL import Image
from tritonclient.utils import InferenceServerException

from tricolor.catalogue.labeller import answer_of, probe_image, read_provenance, shown_size
from tricolor.catalogue.search import Page, Query, SearchError, label_counts, search
from tricolor.catalogue.store import (
    Catalogue,
    CatalogueMissing,
    FileSeen,
    PictureRecord,
    open_catalogue,
    uploads_dir,
)
from tricolor.client import Classification, ModelTimes, TricolorClient
from tricolor.settings import (
    DEFAULT_BIND_ADDRESS,
    LOCAL_STATE_DIR,
    catalogue_url,
    default_triton_url,
    ui_port,
)

import views

MAX_UPLOAD_BYTES = 32 * 1024 * 1024  # the server's own `max_encoded_bytes` default
MAX_BATCH_IMAGES = 32
CSS = "#details th, #details td { white-space: nowrap; }\n" + views.palette_css()
GALLERY_SIDE = 320  # the Catalogue tab shows thumbnails, not the files themselves
UPLOADS_LIBRARY = "uploads"  # the library of pictures added from the UI
KEPT_ANSWERS = 32  # the server's latest answers, by content, for "add to catalogue"


def unanswered(result: Classification) -> gr.Error:
    """The error a user sees for an image without an answer: refused (the image's fault, with
    the server's reason) or not answered (the server's or the connection's)."""
    if result.refused:
        return gr.Error(f"The server refused this image: {result.error}", title="Refused")
    return gr.Error(f"The server did not answer: {result.error}", title="Not answered")


class Backend:
    """The UI's only way to Triton: one `TricolorClient`, built on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: TricolorClient | None = None
        self._lock = threading.Lock()
        self._answers: OrderedDict[str, Classification] = OrderedDict()

    @property
    def client(self) -> TricolorClient:
        with self._lock:
            if self._client is None:
                self._client = TricolorClient(self.url)
            return self._client

    def unreachable(self) -> str:
        return (
            f"Triton is not reachable at {self.url} (TRITON_URL). Start it with `make serve`, "
            "or run the UI with `make demo`."
        )

    def status(self) -> str:
        """The status line, with one tiny inference to learn which weights are served."""
        try:
            version = self.client.server_version()
            models = self.client.repository_index()
        except InferenceServerException as exc:
            return views.status_markdown(self.url, ready=False, error=exc.message())
        ready = self.client.is_ready()
        weights = ""
        if ready:
            probe = io.BytesIO()
            Image.new("RGB", (32, 32), (128, 128, 128)).save(probe, format="PNG")
            weights = self.client.classify_one(probe.getvalue(), "probe").weights
        return views.status_markdown(
            self.url, ready=ready, version=version, models=models, weights=weights
        )

    def _keep(self, sha256: str, result: Classification) -> None:
        with self._lock:
            self._answers[sha256] = result
            self._answers.move_to_end(sha256)
            while len(self._answers) > KEPT_ANSWERS:
                self._answers.popitem(last=False)

    def answer(self, data: bytes) -> Classification:
        """The server's answer for these bytes: the one it gave this UI, else a new one (never
        what a browser sends back)."""
        sha256 = hashlib.sha256(data).hexdigest()
        with self._lock:
            kept = self._answers.get(sha256)
        if kept is not None:
            return kept
        result = self.client.classify_one(data, sha256[:12])
        if result.error is not None:
            raise unanswered(result)
        self._keep(sha256, result)
        return result

    def classify(self, path: str) -> tuple[Classification, dict[str, ModelTimes]]:
        """One image, with the per-model statistics of the interval around it."""
        data = Path(path).read_bytes()
        try:
            before = self.client.inference_statistics()
        except InferenceServerException as exc:
            raise gr.Error(self.unreachable(), title="Server down") from exc
        result = self.client.classify_one(data, Path(path).name)
        if result.error is not None:
            if not self.client.is_ready():
                raise gr.Error(self.unreachable(), title="Server down")
            raise unanswered(result)
        self._keep(hashlib.sha256(data).hexdigest(), result)
        after = self.client.inference_statistics()
        return result, {name: after[name] - before[name] for name in after}


class CatalogueStore:
    """The Catalogue tab's side: the store, read directly (never through Triton)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._catalogue: Catalogue | None = None
        self._lock = threading.Lock()

    def open(self, create: bool = False) -> Catalogue | None:
        """The catalogue, or None while there is none (nothing labelled or added yet)."""
        with self._lock:
            if self._catalogue is None:
                try:
                    self._catalogue = open_catalogue(self.url, create=create)
                except CatalogueMissing:
                    return None
            return self._catalogue

    def classes(self) -> list[tuple[str, int]]:
        catalogue = self.open()
        return label_counts(catalogue) if catalogue is not None else []

    def search(self, query: Query) -> tuple[Page, str | None]:
        """The page of matches, and (only where nothing matches, to say so) how many pictures
        the catalogue holds: a Find with matches is one search."""
        catalogue = self.open()
        if catalogue is None:
            return Page(total=0, hits=[]), "0"
        page = search(catalogue, query)
        return page, None if page.hits else search(catalogue, Query(limit=1)).matches()

    def add(self, path: str, backend: Backend) -> str:
        """Keep the image in the content-addressed folder beside the database (the `uploads`
        library), store its row with the server's answer."""
        data = Path(path).read_bytes()
        result = backend.answer(data)
        sha256 = hashlib.sha256(data).hexdigest()
        root = uploads_dir(self.url)
        relative = f"{sha256[:2]}/{sha256}{Path(path).suffix.lower()}"
        kept = root / relative
        if not kept.exists():
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_bytes(data)
        provenance = read_provenance(backend.client, probe_image())
        width, height = shown_size(data)
        catalogue = self.open(create=True)
        assert catalogue is not None
        library_id = catalogue.library(UPLOADS_LIBRARY, str(root.resolve()))
        seen = FileSeen(library_id, relative.encode(), len(data), kept.stat().st_mtime_ns)
        catalogue.write(
            [
                PictureRecord(
                    sha256=sha256,
                    size=len(data),
                    width=width,
                    height=height,
                    provenance=provenance.with_weights(result.weights),
                    answer=answer_of(result),
                    files=[seen],
                )
            ]
        )
        return kept.name


def thumbnail(path: str) -> Image.Image | None:
    try:
        with Image.open(path) as image:
            image.thumbnail((GALLERY_SIDE, GALLERY_SIDE))
            return image.convert("RGB")
    except OSError:  # moved or deleted since it was labelled: `tricolor label` again finds it
        return None


def build_app(backend: Backend, examples: list[Path], store: CatalogueStore) -> gr.Blocks:
    """The page: status line, one-image tab (the `classify` API), several-images tab, the
    Catalogue tab."""

    def classify_image(path: str | None) -> tuple[dict[str, float], str, str, dict[str, object]]:
        if not path:
            raise gr.Error("Upload, paste or capture an image first.", title="No image")
        result, delta = backend.classify(path)
        return (
            views.confidences(result),
            views.colours_html(result),
            views.details_markdown(result, delta),
            views.api_payload(result),
        )

    def classify_images(paths: list[str] | None) -> tuple[list[tuple[str, str]], str]:
        if not paths:
            raise gr.Error("Choose one or more images first.", title="No images")
        if len(paths) > MAX_BATCH_IMAGES:
            raise gr.Error(f"At most {MAX_BATCH_IMAGES} images at once.", title="Too many")
        if not backend.client.is_ready():
            raise gr.Error(backend.unreachable(), title="Server down")
        results = backend.client.classify_many(
            [Path(path).read_bytes() for path in paths], [Path(path).name for path in paths]
        )
        gallery = [
            (path, views.gallery_caption(result))
            for path, result in zip(paths, results, strict=True)
            if result.error is None
        ]
        return gallery, views.batch_table_html(results)

    def add_to_catalogue(path: str | None, wanted: bool) -> tuple[str, gr.Dropdown]:
        if not wanted or not path:
            return "", gr.Dropdown()
        name = store.add(path, backend)
        added = f"Added to the catalogue as `{name}`: find it in the Catalogue tab."
        return added, gr.Dropdown(choices=views.class_choices(store.classes()))

    def refresh_classes() -> gr.Dropdown:
        return gr.Dropdown(choices=views.class_choices(store.classes()))

    def show_palette(palette: str) -> list[gr.Radio]:
        return [gr.Radio(visible=name == palette) for name in views.PALETTE_NAMES]

    def find(
        label: str,
        palette: str,
        rgb_colour: str,
        ryb_colour: str,
        mode: str,
        share: float,
        count: int,
    ) -> tuple[list[tuple[Image.Image, str]], str]:
        colour = rgb_colour if palette == "RGB" else ryb_colour
        query = views.catalogue_query(label, palette, colour, mode, share, count)
        try:
            page, held = store.search(query)
        except SearchError as exc:
            raise gr.Error(str(exc), title="Not in the catalogue") from exc
        shown = [(thumbnail(hit.local_path), views.catalogue_caption(hit)) for hit in page.hits]
        gallery = [(image, caption) for image, caption in shown if image is not None]
        # a file deleted since the last `tricolor label` is not shown, and not counted
        return gallery, views.catalogue_summary(page, query, held, hidden=len(shown) - len(gallery))

    with gr.Blocks(title="tricolor", analytics_enabled=False) as app:
        gr.Markdown(
            "# tricolor\nResNet-50 labels and dominant colours, computed entirely in NVIDIA "
            "Triton (`classify` ensemble: preprocess → resnet50 → postprocess)."
        )
        with gr.Row():
            status = gr.Markdown("checking the server…", elem_id="status")
            refresh = gr.Button("Refresh status", size="sm", scale=0)
        with gr.Tab("One image"):
            with gr.Row():
                with gr.Column():
                    image = gr.Image(
                        type="filepath",
                        image_mode=None,  # the file goes to Triton untouched
                        sources=["upload", "clipboard", "webcam"],
                        label="Image: upload, drop, paste or webcam",
                        elem_id="image",
                    )
                    run = gr.Button("Classify", variant="primary", elem_id="classify")
                    keep = gr.Checkbox(
                        label=f"Add to catalogue ({views.catalogue_location(store.url)})",
                        value=False,
                        elem_id="add-to-catalogue",
                    )
                    added = gr.Markdown(elem_id="catalogue-added")
                    gr.Examples(examples=[[str(path)] for path in examples], inputs=[image])
                with gr.Column():
                    labels = gr.Label(num_top_classes=5, label="Top-k labels", elem_id="labels")
                    colours = gr.HTML(label="Dominant colours", elem_id="colours")
            # the page's full width: the seven-column per-model table does not fit in a column
            details = gr.Markdown(elem_id="details")
            with gr.Accordion("Raw response (the `classify` API)", open=False):
                raw = gr.JSON(label="classify")
        with gr.Tab("Several images"):
            files = gr.File(
                file_count="multiple", file_types=["image"], type="filepath", label="Images"
            )
            run_many = gr.Button("Classify all", variant="primary", elem_id="classify-many")
            gallery = gr.Gallery(label="Top label and colours", columns=4, elem_id="gallery")
            table = gr.HTML(elem_id="batch-table")
        with gr.Tab("Catalogue", elem_id="catalogue-tab") as catalogue_tab:
            with gr.Row():
                with gr.Column(scale=1):
                    wanted_class = gr.Dropdown(
                        choices=views.class_choices(store.classes()),
                        value=views.ANY,
                        label="Class (top-1, with the pictures held)",
                        elem_id="catalogue-class",
                    )
                    palette = gr.Radio(
                        list(views.PALETTE_NAMES),
                        value="RYB",
                        label="Palette",
                        elem_id="catalogue-palette",
                    )
                    # one colour choice per palette, the other hidden: the API takes both
                    colours_by_palette = {
                        name: gr.Radio(
                            views.colour_choices(name),
                            value=views.ANY,
                            label=f"Colour ({name})",
                            visible=name == "RYB",
                            elem_id=f"catalogue-{name.lower()}-colour",
                            elem_classes=["catalogue-colour"],
                        )
                        for name in views.PALETTE_NAMES
                    }
                    mode = gr.Radio(
                        [views.DOMINANT, views.AT_LEAST],
                        value=views.DOMINANT,
                        label="Colour is",
                        elem_id="catalogue-mode",
                    )
                    share = gr.Slider(
                        0.05,
                        1.0,
                        value=0.2,
                        step=0.05,
                        label="Share of the pixels (at least)",
                        elem_id="catalogue-share",
                    )
                    count = gr.Slider(
                        1, 9, value=9, step=1, label="Pictures", elem_id="catalogue-count"
                    )
                    find_button = gr.Button("Find", variant="primary", elem_id="catalogue-find")
                with gr.Column(scale=2):
                    summary = gr.Markdown(elem_id="catalogue-summary")
                    found = gr.Gallery(label="Matches", columns=3, elem_id="catalogue-gallery")

        run.click(
            classify_image,
            inputs=image,
            outputs=[labels, colours, details, raw],
            api_name="classify",
        ).success(
            add_to_catalogue,
            inputs=[image, keep],
            outputs=[added, wanted_class],
            api_visibility="private",
        )
        catalogue_tab.select(refresh_classes, outputs=wanted_class, api_visibility="private")
        palette.change(
            show_palette,
            inputs=palette,
            outputs=list(colours_by_palette.values()),
            api_visibility="private",
        )
        find_button.click(
            find,
            inputs=[wanted_class, palette, *colours_by_palette.values(), mode, share, count],
            outputs=[found, summary],
            api_name="catalogue",
        )
        run_many.click(
            classify_images, inputs=files, outputs=[gallery, table], api_name="classify_many"
        )
        refresh.click(backend.status, outputs=status, api_name="status")
        app.load(backend.status, outputs=status, api_visibility="private")
    return app


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def start_server(url: str, tricolor: str, timeout_s: float = 180.0) -> subprocess.Popen[bytes]:
    """`tricolor serve` (`tricolor`: the serving venv's console script, which has the server);
    returns once `classify` is ready.

    Stops, instead of quietly using it, when a server already answers at `url` (a `make serve`
    in another terminal): the UI would otherwise run against a server it did not start.
    """
    with TricolorClient(url) as client:
        if client.is_ready():
            raise SystemExit(
                f"ui: a Triton server already answers at {url} (a `make serve` elsewhere?). "
                "Stop it, or use it: `.venv-ui/bin/python ui/app.py` starts only the UI "
                f"(TRITON_URL={url})"
            )
        process = subprocess.Popen([tricolor, "serve"])
        deadline = time.monotonic() + timeout_s
        while process.poll() is None and not client.is_ready():
            if time.monotonic() > deadline:
                process.terminate()
                raise SystemExit(f"ui: Triton was not ready at {url} after {timeout_s:.0f} s")
            time.sleep(0.5)
    if process.poll() is not None:
        raise SystemExit(f"ui: tricolor serve exited with code {process.returncode} (see above)")
    return process


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--host",
        default=os.environ.get("UI_HOST", DEFAULT_BIND_ADDRESS),
        help="address to bind (default 127.0.0.1; 0.0.0.0 exposes the UI to the network)",
    )
    parser.add_argument("--port", type=int, default=ui_port(), help="default: UI_PORT or 7860")
    parser.add_argument("--triton-url", default=default_triton_url(), help="gRPC host:port")
    parser.add_argument(
        "--db", default=catalogue_url(), help="the catalogue (default: TRICOLOR_DB or SQLite)"
    )
    parser.add_argument(
        "--with-server",
        metavar="TRICOLOR",
        help="start the embedded Triton too, with this `tricolor` (make demo: .venv/bin/tricolor)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry, no version check
    signal.signal(signal.SIGTERM, _interrupt)
    server = start_server(args.triton_url, args.with_server) if args.with_server else None
    try:
        examples = views.example_images(LOCAL_STATE_DIR / "ui-examples")
        build_app(Backend(args.triton_url), examples, CatalogueStore(args.db)).launch(
            server_name=args.host,
            server_port=args.port,
            max_file_size=MAX_UPLOAD_BYTES,
            allowed_paths=[str(path) for path in examples],
            show_error=True,
            css=CSS,
        )
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            stop_server(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
