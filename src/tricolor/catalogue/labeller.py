"""`tricolor label`: walk, hash, decide, send through `classify`, store.

The main thread walks the paths, hashes each file (a file whose size and mtime match its
stored row keeps its stored hash) and decides per file: skip (stored for this provenance),
link (a duplicate or a moved file of a stored picture, no inference), or send. Pictures to
send go in batches of several images per request to `concurrency` sender threads over one
gRPC channel; a request the server refuses because of some rows is split: those rows are
stored with the server's reason, the rest sent again. One writer thread stores everything in
batched transactions, so answers survive an interrupted run and the next run resumes.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from PIL import Image
from tritonclient.utils import InferenceServerException

from tricolor.catalogue.store import (
    Answer,
    Catalogue,
    FileSeen,
    FilesRecord,
    PictureRecord,
    Provenance,
    StoredPicture,
)
from tricolor.client import (
    Classification,
    TricolorClient,
    row_reasons,
    rows_to_classifications,
)
from tricolor.contract import COMPOSING_MODELS, MODEL_NAME
from tricolor.imaging import EXIF_ORIENTATION, upright_size
from tricolor.parameters import Parameters
from tricolor.walk import ImageFile, find_images

# files hashed and looked up in the store per round trip
PLAN_CHUNK = 64
# the writer commits at least this often, and at most this many records per transaction
WRITE_INTERVAL_S = 0.25
WRITE_BATCH = 256
READY_POLL_S = 0.5
# attempts for a request that fails for a reason other than its images while the server is up
MAX_ATTEMPTS = 3


class ServerGone(RuntimeError):
    """The server stayed unreachable for longer than the run may wait."""


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` with 0 <= I < N (a Kubernetes Indexed Job's JOB_COMPLETION_INDEX is I)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError as exc:
        raise ValueError(f"--shard takes I/N, e.g. 0/4, not {text!r}") from exc
    if not 0 <= index < count:
        raise ValueError(f"--shard {text}: I must be in 0..N-1")
    return index, count


def shard_of(relative: str, count: int) -> int:
    """The shard of a file, from its path relative to the named folder: the same on every
    worker, whatever the folder is mounted as."""
    digest = hashlib.sha256(relative.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def shown_size(data: bytes) -> tuple[int | None, int | None]:
    """(width, height) after the EXIF orientation, from the header alone; None if unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                size = image.size
                orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 (any unreadable header: the server gives the reason)
        return None, None
    return upright_size(size, orientation)


def read_provenance(client: TricolorClient, probe: bytes) -> Provenance:
    """The served model versions, every model's settings from its config on the server, and
    the weights (`WEIGHTS` of one tiny inference)."""
    models = {
        model.name: model.version
        for model in client.repository_index()
        if model.state == "READY" and model.name in (MODEL_NAME, *COMPOSING_MODELS)
    }
    settings = {}
    for name in (MODEL_NAME, *COMPOSING_MODELS):
        config = client.model_config(name)
        settings[name] = {
            "runtime": config.get("platform") or config.get("backend", ""),
            "parameters": dict(sorted(Parameters.from_model_config(config).values.items())),
        }
    answer = client.classify_one(probe, "probe")
    if answer.error is not None:
        raise RuntimeError(f"the server refused the provenance probe: {answer.error}")
    return Provenance(models=models, weights=answer.weights, settings=settings)


def probe_image() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def answer_of(result: Classification) -> Answer:
    return Answer(**{item.name: getattr(result, item.name) for item in fields(Answer)})


@dataclass
class Pending:
    """A picture on its way to the server, and every file of it met so far in this run."""

    sha256: str
    size: int
    data: bytes
    files: list[FileSeen]


@dataclass
class Summary:
    found: int = 0
    labelled: int = 0
    refused: int = 0
    failed: int = 0  # not answered for a reason of ours or the server's: retried next run
    duplicates: int = 0
    moved: int = 0
    unchanged: int = 0
    kept_other_provenance: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return (
            self.labelled
            + self.refused
            + self.failed
            + self.duplicates
            + self.moved
            + self.unchanged
            + self.kept_other_provenance
        )

    def line(self) -> str:
        rate = self.labelled / self.elapsed_s if self.elapsed_s else 0.0
        parts = [
            f"{self.found} images: {self.labelled} labelled ({rate:.1f}/s)",
            f"{self.duplicates} duplicates",
            f"{self.moved} moved",
            f"{self.unchanged} unchanged",
            f"{self.refused} refused",
        ]
        if self.failed:
            parts.append(f"{self.failed} failed")
        line = ", ".join(parts) + f" in {self.elapsed_s:.1f} s"
        if self.kept_other_provenance:
            line += (
                f"; {self.kept_other_provenance} kept from another provenance "
                "(--stale re-labels them)"
            )
        if self.refused:
            line += "; `tricolor search --errors` lists the refused files"
        if self.interrupted:
            line += f"; interrupted with {self.found - self.done} to go: run it again to resume"
        return line


class Progress:
    """What the labeller tells its caller (the CLI draws a rich progress bar from it)."""

    def total(self, count: int) -> None: ...

    def advance(self, count: int = 1) -> None: ...


class Labeller:
    def __init__(
        self,
        catalogue: Catalogue,
        client: TricolorClient,
        *,
        stale: bool = False,
        shard: tuple[int, int] = (0, 1),
        concurrency: int = 4,
        batch_size: int = 8,
        server_wait_s: float = 300.0,
        progress: Progress | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.client = client
        self.stale = stale
        self.shard = shard
        self.concurrency = max(1, concurrency)
        self.batch_size = max(1, batch_size)
        self.server_wait_s = server_wait_s
        self.progress = progress or Progress()
        self.summary = Summary()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._probe = probe_image()
        self._provenance: Provenance | None = None
        self._pending: dict[str, Pending] = {}
        self._written: set[str] = set()  # pictures this run has handed to the writer
        self._batches: queue.Queue[list[Pending] | None] = queue.Queue(maxsize=self.concurrency)
        self._records: queue.Queue[PictureRecord | FilesRecord | None] = queue.Queue()
        self._writer_error: BaseException | None = None

    @property
    def provenance(self) -> Provenance | None:
        """The server's provenance, once the run has read it."""
        return self._provenance

    def stop(self) -> None:
        """Finish what is in flight, store it, and return (Ctrl-C, SIGTERM)."""
        self._stopping.set()

    # ---- the run ----

    def run(self, paths: Iterable[str | Path]) -> Summary:
        started = time.monotonic()
        found = [
            image
            for image in find_images(paths)
            if shard_of(image.relative, self.shard[1]) == self.shard[0]
        ]
        self.summary.found = len(found)
        self.progress.total(len(found))
        self._provenance = read_provenance(self.client, self._probe)
        writer = threading.Thread(target=self._write_loop, name="catalogue-writer")
        senders = [
            threading.Thread(target=self._send_loop, name=f"catalogue-sender-{n}")
            for n in range(self.concurrency)
        ]
        writer.start()
        for sender in senders:
            sender.start()
        try:
            self._plan(found)
        finally:
            for _ in senders:
                self._batches.put(None)
            for sender in senders:
                sender.join()
            self._records.put(None)
            writer.join()
        if self._writer_error is not None:
            raise RuntimeError(f"storing the answers failed: {self._writer_error}") from (
                self._writer_error
            )
        self.summary.interrupted = self._stopping.is_set() and self.summary.done < len(found)
        self.summary.elapsed_s = time.monotonic() - started
        return self.summary

    def _count(self, outcome: str, files: int = 1) -> None:
        with self._lock:
            setattr(self.summary, outcome, getattr(self.summary, outcome) + files)
        self.progress.advance(files)

    # ---- planning (main thread) ----

    def _plan(self, found: list[ImageFile]) -> None:
        stored_files = self.catalogue.stored_files()
        seen_paths = {str(image.path.resolve()) for image in found}
        batch: list[Pending] = []
        for start in range(0, len(found), PLAN_CHUNK):
            if self._stopping.is_set():
                return
            chunk = []
            for image in found[start : start + PLAN_CHUNK]:
                chunk.append(self._hash(image.path, stored_files))
            stored = self.catalogue.stored_pictures({item[1] for item in chunk if item})
            for item in chunk:
                if item is None:
                    continue
                seen, sha256, data = item
                to_send = self._decide(seen, sha256, data, stored.get(sha256), seen_paths)
                if to_send is not None:
                    batch.append(to_send)
                    if len(batch) == self.batch_size:
                        self._submit(batch)
                        batch = []
        if batch:
            self._submit(batch)

    def _submit(self, batch: list[Pending]) -> None:
        while not self._stopping.is_set():
            try:
                self._batches.put(batch, timeout=READY_POLL_S)
                return
            except queue.Full:
                continue

    def _hash(
        self, path: Path, stored_files: dict[str, Any]
    ) -> tuple[FileSeen, str, bytes | None] | None:
        """The file as seen now and its hash; the bytes when they had to be read."""
        absolute = str(path.resolve())
        try:
            status = path.stat()
            known = stored_files.get(absolute)
            seen = FileSeen(absolute, status.st_size, status.st_mtime_ns)
            if known is not None and (known.size, known.mtime_ns) == (seen.size, seen.mtime_ns):
                return seen, known.sha256, None
            data = path.read_bytes()
        except OSError as exc:  # vanished or unreadable since the walk: nothing to store
            with self._lock:
                self.summary.problems.append(f"{path}: cannot read: {exc.strerror or exc}")
            self._count("failed")
            return None
        return FileSeen(absolute, len(data), seen.mtime_ns), hashlib.sha256(data).hexdigest(), data

    def _decide(
        self,
        seen: FileSeen,
        sha256: str,
        data: bytes | None,
        stored: StoredPicture | None,
        seen_paths: set[str],
    ) -> Pending | None:
        """Skip, link or send one file; returns the picture to send, if it is to be sent.

        `data` is None when the file's size and mtime match its stored row (not read again).
        """
        with self._lock:
            pending = self._pending.get(sha256)
            if pending is not None:  # a second copy of a picture on its way: no second request
                pending.files.append(seen)
                self.summary.duplicates += 1
                self.progress.advance()
                return None
            written = sha256 in self._written
        assert self._provenance is not None
        labelled = stored is not None and not stored.refused
        current = labelled and stored.fingerprint == self._provenance.fingerprint
        if not written and (not labelled or (self.stale and not current)):
            data = Path(seen.path).read_bytes() if data is None else data
            pending = Pending(sha256, len(data), data, [seen])
            with self._lock:
                self._pending[sha256] = pending
            return pending
        known_paths = stored.paths if stored is not None else ()
        if seen.path in known_paths:
            if data is not None:  # touched, same content: remember the new size and mtime
                self._records.put(FilesRecord(sha256, [seen]))
            self._count("unchanged" if current or written else "kept_other_provenance")
            return None
        gone = [path for path in known_paths if path not in seen_paths and not os.path.exists(path)]
        if gone:
            seen = FileSeen(seen.path, seen.size, seen.mtime_ns, moved_from=gone[0])
        self._records.put(FilesRecord(sha256, [seen]))
        self._count("moved" if gone else "duplicates")
        return None

    # ---- sending (sender threads) ----

    def _send_loop(self) -> None:
        while True:
            batch = self._batches.get()
            if batch is None:
                return
            if self._stopping.is_set():
                continue  # drained, not sent: the next run picks these up
            try:
                self._classify(batch)
            except Exception as exc:  # noqa: BLE001 (ServerGone, or a bug: reported, run ends)
                with self._lock:
                    self.summary.problems.append(str(exc))
                self._stopping.set()
                self._fail(batch)

    def _classify(self, batch: list[Pending], attempt: int = 1) -> None:
        """Send one batch; store each answer or refusal; split on rows the server refused."""
        provenance = self._provenance
        assert provenance is not None
        started = time.perf_counter()
        try:
            outputs = self.client.infer_batch([pending.data for pending in batch])
        except InferenceServerException as exc:
            refusal = exc.status() == "StatusCode.INVALID_ARGUMENT"
            reasons = row_reasons(exc.message()) if refusal else {}
            if reasons and set(reasons) <= set(range(len(batch))):
                rest = []
                for row, pending in enumerate(batch):
                    if row in reasons:
                        self._store(pending, provenance, error=reasons[row])
                    else:
                        rest.append(pending)
                if rest:
                    self._classify(rest)
                return
            if attempt < MAX_ATTEMPTS or not self.client.is_ready():
                self._wait_for_server()
                self._classify(batch, attempt + 1)
            elif len(batch) > 1:  # the server is up and fails the batch: find which image
                for pending in batch:
                    self._classify([pending], attempt)
            else:
                with self._lock:
                    self.summary.problems.append(
                        f"{batch[0].files[0].path}: not answered: {exc.message()} "
                        "(not the image's fault; retried next run)"
                    )
                self._fail(batch)
            return
        results = rows_to_classifications(
            outputs, [pending.sha256 for pending in batch], (time.perf_counter() - started) * 1e3
        )
        for pending, result in zip(batch, results, strict=True):
            self._store(pending, provenance.with_weights(result.weights), answer=answer_of(result))

    def _wait_for_server(self) -> None:
        """Until `classify` is ready again (a restart), then re-read the provenance."""
        deadline = time.monotonic() + self.server_wait_s
        while True:
            if self._stopping.is_set() or time.monotonic() > deadline:
                raise ServerGone(
                    f"Triton at {self.client.url} did not come back within "
                    f"{self.server_wait_s:.0f} s; what was answered is stored, run again to resume"
                )
            if self.client.is_ready():
                try:
                    self._provenance = read_provenance(self.client, self._probe)
                    return
                except (InferenceServerException, RuntimeError):
                    pass  # still starting up
            time.sleep(READY_POLL_S)

    def _store(
        self,
        pending: Pending,
        provenance: Provenance,
        answer: Answer | None = None,
        error: str | None = None,
    ) -> None:
        with self._lock:
            self._pending.pop(pending.sha256, None)
            self._written.add(pending.sha256)
            files = list(pending.files)
        width, height = shown_size(pending.data)
        self._records.put(
            PictureRecord(
                sha256=pending.sha256,
                size=pending.size,
                width=width,
                height=height,
                provenance=provenance,
                answer=answer,
                error=error,
                files=files,
            )
        )
        self._count("labelled" if answer is not None else "refused")

    def _fail(self, batch: list[Pending]) -> None:
        """Pictures of `batch` not stored (their copies met meanwhile went in as duplicates)."""
        with self._lock:
            lost = [self._pending.pop(pending.sha256, None) for pending in batch]
        self._count("failed", sum(pending is not None for pending in lost))

    # ---- writing (the writer thread) ----

    def _write_loop(self) -> None:
        finished = False
        while not finished:
            records: list[PictureRecord | FilesRecord] = []
            deadline = time.monotonic() + WRITE_INTERVAL_S
            while len(records) < WRITE_BATCH:
                try:
                    record = self._records.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if record is None:
                    finished = True
                    break
                records.append(record)
            if records and self._writer_error is None:
                try:
                    self.catalogue.write(records)
                except Exception as exc:  # noqa: BLE001 (reported by run(); senders stop)
                    self._writer_error = exc
                    self._stopping.set()


def label(
    catalogue: Catalogue,
    client: TricolorClient,
    paths: Iterable[str | Path],
    on_labeller: Callable[[Labeller], None] | None = None,
    **options: Any,
) -> Summary:
    """One `tricolor label` run; `on_labeller` gets the labeller first (to wire up signals)."""
    labeller = Labeller(catalogue, client, **options)
    if on_labeller is not None:
        on_labeller(labeller)
    return labeller.run(paths)
