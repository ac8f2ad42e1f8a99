"""`tricolor label`: a pipeline of stages over a photo collection.

    walk -> hash -> decide -> classify (N threads) -> write

Each stage is one thread (classify: `concurrency` of them) that owns its state and hands its
work to the next through a bounded queue, so memory is bounded by the depth of the pipeline,
not by the size of the collection:

- walk: every folder named is a library (its name: `--library`, or the folder's absolute
  path); every image under it, in this shard's share, as library + relative path (the file
  system's bytes: a name that is not UTF-8 is kept as it is).
- hash: per chunk of files, their stored rows (one query per chunk); a file whose size and
  mtime match its row keeps the stored hash, any other is hashed as a stream
  (`hashlib.file_digest`): no bytes are kept.
- decide: per chunk, the pictures in flight in this run, then the stored pictures of the
  chunk's hashes (one query). Each file is found again (touched), linked (a copy, a moved
  file, new content at a known path whose picture is stored: no inference) or sent; only the
  bytes of a picture to send are read, here.
- classify: batches of pictures through `classify`; a request the server refuses because of
  some rows is split: those rows are stored with the server's reason, the rest sent again; a
  server that goes away is waited for.
- write: the one writer stores everything in batched transactions (answers survive an
  interrupted run; the next one resumes), keeps a copy of a picture still in flight until
  that picture is stored, and, once a run has walked a library whole, marks the library's
  files that it no longer found as missing.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
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
    Record,
    StoredFile,
    StoredPicture,
    Touch,
    now,
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
from tricolor.walk import walk_folder

# files hashed and looked up in the store per round trip
PLAN_CHUNK = 64
# the writer commits at least this often, and at most this many records per transaction
WRITE_INTERVAL_S = 0.25
WRITE_BATCH = 256
READY_POLL_S = 0.5
# attempts for a request that fails for a reason other than its images while the server is up
MAX_ATTEMPTS = 3
# how long a stage waits for more input before handing on a partial chunk
CHUNK_WAIT_S = 0.05


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


def shard_of(relative: bytes, count: int) -> int:
    """The shard of a file: the first 8 bytes of the SHA-256 of its path relative to its
    library's root (the file system's bytes), big-endian, modulo N. The same on every worker,
    whatever the folder is mounted as."""
    digest = hashlib.sha256(relative).digest()
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


def file_digest(path: Path) -> str:
    """The SHA-256 of a file, read as a stream (never whole in memory)."""
    with path.open("rb") as handle:
        if hasattr(hashlib, "file_digest"):  # Python 3.11+
            return hashlib.file_digest(handle, "sha256").hexdigest()
        digest = hashlib.sha256()  # Python 3.10, the project's floor
        while block := handle.read(1 << 20):
            digest.update(block)
        return digest.hexdigest()


@dataclass(frozen=True)
class Library:
    """A folder named to `label` (or the folder of a file named): its id in the store, and
    whether this run walks it whole (then what it no longer finds is missing)."""

    id: int
    name: str
    root: Path
    whole: bool


@dataclass(frozen=True)
class Found:
    library: Library
    relative: bytes
    path: Path


@dataclass(frozen=True)
class Hashed:
    found: Found
    seen: FileSeen
    sha256: str
    stored: StoredFile | None  # the row this path has in the store

    @property
    def same(self) -> bool:
        """This path holds the content stored for it."""
        return self.stored is not None and self.stored.sha256 == self.sha256


@dataclass
class Pending:
    """A picture on its way to the server (the first file of it met in this run)."""

    sha256: str
    data: bytes
    seen: FileSeen


@dataclass(frozen=True)
class Store:
    """For the writer: a record, and what its files count as once stored (None: nothing)."""

    record: Record
    outcome: str | None


@dataclass(frozen=True)
class Failed:
    """For the writer: a picture that was not stored; `counted`: a failure (not a stop)."""

    sha256: str
    counted: bool = True


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 image`, `2 images` (`nouns`: the plural where it is not noun + s)."""
    return f"{count} {noun}" if count == 1 else f"{count} {nouns or noun + 's'}"


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
    vanished: int = 0  # gone between the walk and its hashing: nothing to store
    unreadable: int = 0  # found but not readable (permissions, I/O errors)
    missing: int = 0  # stored files this run no longer found, now marked missing
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
            + self.vanished
            + self.unreadable
        )

    def line(self) -> str:
        rate = self.labelled / self.elapsed_s if self.elapsed_s else 0.0
        parts = [
            f"{plural(self.found, 'image')}: {self.labelled} labelled ({rate:.1f}/s)",
            plural(self.duplicates, "duplicate"),
            f"{self.moved} moved",
            f"{self.unchanged} unchanged",
            f"{self.refused} refused",
        ]
        for count, words in (
            (self.failed, "failed"),
            (self.vanished, "vanished"),
            (self.unreadable, "unreadable"),
            (self.missing, "missing"),
        ):
            if count:
                parts.append(f"{count} {words}")
        line = ", ".join(parts) + f" in {self.elapsed_s:.1f} s"
        if self.kept_other_provenance:
            line += (
                f"; {self.kept_other_provenance} kept from another provenance "
                "(--stale re-labels them)"
            )
        if self.refused:
            line += "; `tricolor search --errors` lists the refused files"
        if self.missing:
            line += "; `tricolor search --missing` lists the missing files"
        if self.interrupted:
            line += f"; interrupted with {self.found - self.done} to go: run it again to resume"
        return line


class Progress:
    """What the labeller tells its caller (the CLI draws a rich progress bar from it)."""

    def total(self, count: int) -> None: ...

    def advance(self, count: int = 1) -> None: ...


class InFlight:
    """The pictures sent in this run and not yet stored: added by decide, removed by the
    writer once the picture is committed (or failed). Decide looks here *before* it looks in
    the store, so a picture is always in one or the other."""

    def __init__(self) -> None:
        self._hashes: set[str] = set()
        self._lock = threading.Lock()

    def add(self, sha256: str) -> None:
        with self._lock:
            self._hashes.add(sha256)

    def discard(self, sha256: str) -> None:
        with self._lock:
            self._hashes.discard(sha256)

    def among(self, hashes: Iterable[str]) -> set[str]:
        with self._lock:
            return self._hashes.intersection(hashes)

    def __contains__(self, sha256: str) -> bool:
        with self._lock:
            return sha256 in self._hashes


def take(inbox: queue.Queue, size: int) -> tuple[list[Any], bool]:
    """Up to `size` items (waiting for the first); True once the stage's input has ended."""
    first = inbox.get()
    if first is None:
        return [], True
    items = [first]
    while len(items) < size:
        try:
            item = inbox.get(timeout=CHUNK_WAIT_S)
        except queue.Empty:
            break
        if item is None:
            return items, True
        items.append(item)
    return items, False


class Labeller:
    def __init__(
        self,
        catalogue: Catalogue,
        client: TricolorClient,
        *,
        stale: bool = False,
        shard: tuple[int, int] = (0, 1),
        library: str | None = None,
        concurrency: int = 4,
        batch_size: int = 8,
        server_wait_s: float = 300.0,
        progress: Progress | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.client = client
        self.stale = stale
        self.shard = shard
        self.library_name = library
        self.concurrency = max(1, concurrency)
        self.batch_size = max(1, batch_size)
        self.server_wait_s = server_wait_s
        self.progress = progress or Progress()
        self.summary = Summary()
        self._stopping = threading.Event()
        self._walked = threading.Event()  # the walk reached its end (not stopped)
        self._summary_lock = threading.Lock()
        self._crash: BaseException | None = None
        self._probe = probe_image()
        self._provenance: Provenance | None = None
        self._in_flight = InFlight()
        self._found: queue.Queue[Found | None] = queue.Queue(maxsize=4 * PLAN_CHUNK)
        self._hashed: queue.Queue[list[Hashed] | None] = queue.Queue(maxsize=4)
        self._batches: queue.Queue[list[Pending] | None] = queue.Queue(maxsize=self.concurrency)
        self._records: queue.Queue[Store | Failed | None] = queue.Queue(maxsize=4 * WRITE_BATCH)

    @property
    def provenance(self) -> Provenance | None:
        """The server's provenance, once the run has read it."""
        return self._provenance

    def stop(self) -> None:
        """Finish what is in flight, store it, and return (Ctrl-C, SIGTERM)."""
        self._stopping.set()

    # ---- the run ----

    def libraries(self, paths: Iterable[str | Path]) -> list[tuple[Library, Path | None]]:
        """Each named path as (its library, the file named) or (library, None) for a folder."""
        named = [Path(path) for path in paths]
        absent = [str(path) for path in named if not path.exists()]
        if absent:
            raise FileNotFoundError(f"no such file or folder: {', '.join(absent)}")
        if self.library_name is not None and len(named) != 1:
            raise ValueError("--library names one library: give it one folder")
        folders = {path.resolve() for path in named if path.is_dir()}
        chosen, taken = [], set()
        for path in named:
            resolved = path.resolve()
            # a path inside another folder named here is walked with it: not a second time
            # (each file its own duplicate) nor as a library of its own
            if resolved in taken or any(folder in resolved.parents for folder in folders):
                continue
            taken.add(resolved)
            folder = resolved if path.is_dir() else resolved.parent
            name = self.library_name or str(folder)
            library = Library(
                self.catalogue.library(name, str(folder)), name, folder, path.is_dir()
            )
            chosen.append((library, None if path.is_dir() else path))
        return chosen

    def run(self, paths: Iterable[str | Path]) -> Summary:
        started = time.monotonic()
        began = now()
        libraries = self.libraries(paths)
        self._provenance = read_provenance(self.client, self._probe)
        stages = [
            threading.Thread(target=self._stage, args=(self._walk, libraries), name="walk"),
            threading.Thread(target=self._stage, args=(self._hash,), name="hash"),
            threading.Thread(target=self._stage, args=(self._decide,), name="decide"),
            *(
                threading.Thread(target=self._stage, args=(self._send,), name=f"classify-{n}")
                for n in range(self.concurrency)
            ),
            threading.Thread(target=self._stage, args=(self._write,), name="write"),
        ]
        for stage in stages:
            stage.start()
        for stage in stages:
            stage.join()
        if self._crash is not None:
            raise self._crash
        complete = self._walked.is_set() and not self._stopping.is_set()
        if complete:
            index, count = self.shard
            for library, _ in libraries:
                if library.whole:
                    self.summary.missing += self.catalogue.mark_missing(
                        library.id, began, lambda relative: shard_of(relative, count) == index
                    )
        self.summary.interrupted = not complete
        self.summary.elapsed_s = time.monotonic() - started
        return self.summary

    def _stage(self, body: Callable[..., None], *args: Any) -> None:
        """Run one stage; an unexpected failure stops the run and is raised by `run`. Every
        stage hands on its end (None) and, after a failure, drains its input: no stage above
        it blocks on a full queue."""
        try:
            body(*args)
        except BaseException as exc:  # noqa: BLE001 (raised by run() with its traceback)
            with self._summary_lock:
                self._crash = self._crash or exc
            self._stopping.set()

    def _count(self, outcome: str, files: int = 1) -> None:
        if not files:
            return
        with self._summary_lock:
            setattr(self.summary, outcome, getattr(self.summary, outcome) + files)
        if outcome not in ("found", "missing"):
            self.progress.advance(files)

    def _problem(self, text: str) -> None:
        with self._summary_lock:
            self.summary.problems.append(text)

    @staticmethod
    def _drain(inbox: queue.Queue, ends: int = 1) -> None:
        """Read the rest of a stage's input (after a failure) so no stage above it blocks."""
        while ends:
            if inbox.get() is None:
                ends -= 1

    # ---- walk ----

    def _walk(self, libraries: list[tuple[Library, Path | None]]) -> None:
        index, count = self.shard
        try:
            for library, named_file in libraries:
                images: Iterator[Any] = (
                    walk_folder(library.root) if named_file is None else iter([named_file])
                )
                for image in images:
                    if self._stopping.is_set():
                        return
                    path = image if named_file is not None else image.path
                    relative = os.fsencode(path.name if named_file is not None else image.relative)
                    if shard_of(relative, count) != index:
                        continue
                    self._count("found")
                    self.progress.total(self.summary.found)
                    self._found.put(Found(library, relative, path))
            self._walked.set()
        finally:
            self._found.put(None)

    # ---- hash ----

    def _hash(self) -> None:
        try:
            ended = False
            while not ended:
                chunk, ended = take(self._found, PLAN_CHUNK)
                if chunk and not self._stopping.is_set():
                    self._hashed.put(self._hash_chunk(chunk))
        except BaseException:
            self._drain(self._found)
            raise
        finally:
            self._hashed.put(None)
            self._records.put(None)  # it stores what it cannot read

    def _hash_chunk(self, chunk: list[Found]) -> list[Hashed]:
        stored: dict[tuple[int, bytes], StoredFile] = {}
        for library_id in {found.library.id for found in chunk}:
            rows = self.catalogue.stored_files(
                library_id, [found.relative for found in chunk if found.library.id == library_id]
            )
            stored.update({(library_id, relative): row for relative, row in rows.items()})
        hashed = []
        for found in chunk:
            known = stored.get((found.library.id, found.relative))
            try:
                status = found.path.stat()
                seen = FileSeen(
                    found.library.id, found.relative, status.st_size, status.st_mtime_ns
                )
                if known is not None and (known.size, known.mtime_ns) == (seen.size, seen.mtime_ns):
                    sha256 = known.sha256
                else:
                    sha256 = file_digest(found.path)
            except OSError as exc:
                self._unreadable(found, exc, known)
                continue
            hashed.append(Hashed(found, seen, sha256, known))
        return hashed

    def _unreadable(self, found: Found, exc: OSError, known: StoredFile | None) -> None:
        """A file that vanished since the walk (nothing to store: the next run marks it
        missing) or cannot be read (recorded, kept as it is stored)."""
        if isinstance(exc, FileNotFoundError):
            self._count("vanished")
            return
        self._problem(f"{found.path}: cannot read: {exc.strerror or exc}")
        if known is not None:  # still there: not missing
            self._records.put(Store(Touch([known.id]), None))
        self._count("unreadable")

    # ---- decide ----

    def _decide(self) -> None:
        claimed: set[tuple[int, bytes]] = set()  # stored paths this run moved a file from
        try:
            while (chunk := self._hashed.get()) is not None:
                if self._stopping.is_set():
                    continue
                in_flight = self._in_flight.among(item.sha256 for item in chunk)
                # a path whose content is the one stored there (most of a rescan) brought its
                # picture's state with it: only other content is looked up by its hash
                stored = self.catalogue.stored_pictures(
                    item.sha256 for item in chunk if not item.same
                )
                batch: list[Pending] = []
                touched: list[int] = []
                for item in chunk:
                    if item.stored is not None:
                        touched.append(item.stored.id)
                    pending = self._decide_one(item, stored.get(item.sha256), in_flight, claimed)
                    if pending is not None:
                        in_flight.add(pending.sha256)
                        batch.append(pending)
                        if len(batch) == self.batch_size:
                            self._batches.put(batch)
                            batch = []
                if touched:
                    self._records.put(Store(Touch(touched), None))
                if batch:
                    self._batches.put(batch)
        except BaseException:
            self._drain(self._hashed)
            raise
        finally:
            for _ in range(self.concurrency):
                self._batches.put(None)
            self._records.put(None)

    def _decide_one(
        self,
        item: Hashed,
        stored: StoredPicture | None,
        in_flight: set[str],
        claimed: set[tuple[int, bytes]],
    ) -> Pending | None:
        """Touch, link or send one file; returns the picture to send, if it is to be sent."""
        assert self._provenance is not None
        seen, sha256, same = item.seen, item.sha256, item.same
        if sha256 in in_flight:  # a copy of a picture on its way: no second request
            if same:  # its row is there already (touched)
                self._count("duplicates")
            else:
                self._records.put(Store(FilesRecord(sha256, [seen]), "duplicates"))
            return None
        known = item.stored if same else stored
        labelled = known is not None and not known.refused
        current = labelled and known.fingerprint == self._provenance.fingerprint
        if not labelled or (self.stale and not current):
            try:
                data = item.found.path.read_bytes()
            except OSError as exc:
                self._unreadable(item.found, exc, None)
                return None
            if len(data) != seen.size:  # rewritten since it was hashed
                sha256 = hashlib.sha256(data).hexdigest()
                seen = FileSeen(seen.library_id, seen.relative, len(data), seen.mtime_ns)
            self._in_flight.add(sha256)
            return Pending(sha256, data, seen)
        if same:
            assert item.stored is not None
            outcome = "unchanged" if current else "kept_other_provenance"
            if (item.stored.size, item.stored.mtime_ns) != (seen.size, seen.mtime_ns):
                self._records.put(Store(FilesRecord(sha256, [seen]), None))
            self._count(outcome)
            return None
        assert stored is not None
        library = item.found.library
        gone = [
            relative
            for library_id, relative in stored.files
            if library_id == library.id
            and relative != seen.relative
            and (library_id, relative) not in claimed
            and not os.path.lexists(os.fsencode(library.root) + b"/" + relative)
        ]
        if gone:  # moved or renamed inside its library: the row follows the file
            claimed.add((library.id, gone[0]))
            seen = FileSeen(seen.library_id, seen.relative, seen.size, seen.mtime_ns, gone[0])
        self._records.put(Store(FilesRecord(sha256, [seen]), "moved" if gone else "duplicates"))
        return None

    # ---- classify ----

    def _send(self) -> None:
        try:
            while (batch := self._batches.get()) is not None:
                if self._stopping.is_set():  # drained, not sent: the next run picks these up
                    for pending in batch:
                        self._records.put(Failed(pending.sha256, counted=False))
                    continue
                try:
                    self._classify(batch)
                except ServerGone as exc:
                    self._problem(str(exc))
                    self._stopping.set()
                    for pending in batch:
                        self._records.put(Failed(pending.sha256))
        except BaseException:
            self._drain(self._batches)
            raise
        finally:
            self._records.put(None)

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
                self._problem(
                    f"{batch[0].sha256[:12]}… ({shown_seen(batch[0])}): not answered: "
                    f"{exc.message()} (not the image's fault; retried next run)"
                )
                self._records.put(Failed(batch[0].sha256))
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
        width, height = shown_size(pending.data)
        record = PictureRecord(
            sha256=pending.sha256,
            size=len(pending.data),
            width=width,
            height=height,
            provenance=provenance,
            answer=answer,
            error=error,
            files=[pending.seen],
        )
        self._records.put(Store(record, "labelled" if answer is not None else "refused"))

    # ---- write ----

    def _write(self) -> None:
        """The one writer. Copies of a picture in flight wait (`parked`) until it is stored."""
        producers = 2 + self.concurrency  # hash, decide, the senders
        parked: dict[str, list[Store]] = {}
        carried: list[Store] = []
        try:
            while producers or carried:
                items: list[Store] = carried
                carried = []
                deadline = time.monotonic() + WRITE_INTERVAL_S
                while len(items) < WRITE_BATCH and producers:
                    try:
                        item = self._records.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    if item is None:
                        producers -= 1
                    elif isinstance(item, Failed):
                        self._in_flight.discard(item.sha256)
                        copies = parked.pop(item.sha256, [])
                        if item.counted:
                            self._count("failed", 1 + sum(len(c.record.files) for c in copies))
                    else:
                        items.append(item)
                carried = self._write_batch(items, parked)
            self._count("failed", sum(len(c.record.files) for cs in parked.values() for c in cs))
        except BaseException:
            self._drain(self._records, producers)
            raise

    def _write_batch(self, items: list[Store], parked: dict[str, list[Store]]) -> list[Store]:
        """Store `items` in one transaction; returns the parked copies now free to store."""
        if not items:
            return []
        unplaced = {id(record) for record in self.catalogue.write([i.record for i in items])}
        freed: list[Store] = []
        for item in items:
            record = item.record
            if id(record) in unplaced:
                assert isinstance(record, FilesRecord)
                if record.sha256 in self._in_flight:
                    parked.setdefault(record.sha256, []).append(item)
                else:  # its picture was not stored: the next run links it
                    self._count("failed", len(record.files))
                continue
            if isinstance(record, PictureRecord):
                self._in_flight.discard(record.sha256)
                freed.extend(parked.pop(record.sha256, []))
            if item.outcome is not None and not isinstance(record, Touch):
                self._count(item.outcome, len(record.files))
        return freed


def shown_seen(pending: Pending) -> str:
    return pending.seen.relative.decode("utf-8", "backslashreplace")
