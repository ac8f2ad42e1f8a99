"""The catalogue's tables (SQLAlchemy Core) and the one place that writes them.

A *picture* is one content (SHA-256): its answer from `classify`, or the server's reason for
refusing it, and the provenance of that answer. A *file* is a path holding a picture, stored
as its *library* (a folder named to `tricolor label`, by name, so hosts mounting one collection
at different places share its rows) plus its path relative to the library's root, as the raw
bytes the file system gave (a name that is not UTF-8 is kept as it is, and shown escaped).
The same content under a second path is a second file of the same picture (a duplicate,
labelled once). A file a run over its library no longer finds is marked missing, never
deleted. Classes live in their own table; a picture references its top-k classes.

SQLite (WAL mode) by default; PostgreSQL with a `postgresql://` URL, through the same code.
The tables are defined in `schema.py`, made by the Alembic migrations in `migrations/`;
`open_catalogue` applies them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Table,
    and_,
    create_engine,
    event,
    exists,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from tricolor.catalogue.schema import (
    classes,
    files,
    libraries,
    picture_colours,
    picture_labels,
    pictures,
    provenances,
)
from tricolor.colours import RGB_PALETTE, RYB_PALETTE, Palette
from tricolor.settings import catalogue_url, user_data_dir

PALETTES: dict[str, Palette] = {"rgb": RGB_PALETTE, "ryb": RYB_PALETTE}
# rows per IN (...) list: well under SQLite's 32766 bound parameters
CHUNK = 500
DIALECTS = ("sqlite", "postgresql")
# a transaction PostgreSQL aborted to break a deadlock (or a serialisation failure) is retried
WRITE_ATTEMPTS = 5
RETRIED_SQLSTATES = ("40P01", "40001")


def shown_relative(relative: bytes) -> str:
    """A stored relative path as text: bytes that are not UTF-8 shown escaped (`caf\\xe9`)."""
    return relative.decode("utf-8", "backslashreplace")


def shown_path(root: str, relative: bytes) -> str:
    """Where a file is, for people: the library's root joined with the escaped relative path."""
    return f"{root.rstrip('/')}/{shown_relative(relative)}"


def local_path(root: str, relative: bytes) -> str:
    """The path that opens the file on this host (undecodable bytes as surrogate escapes)."""
    return os.fsdecode(os.fsencode(root.rstrip("/")) + b"/" + relative)


def now() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back naive; every one was written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Provenance:
    """Where an answer came from: the model versions served, the weights, every model's
    settings as the server reports them (its model config)."""

    models: dict[str, str]
    weights: str
    settings: dict[str, Any]

    @cached_property  # read per file by a rescan: hashed once
    def fingerprint(self) -> str:
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def with_weights(self, weights: str) -> Provenance:
        return self if weights == self.weights else Provenance(self.models, weights, self.settings)


@dataclass(frozen=True)
class Answer:
    """What `classify` answered for one picture (the fields of `tricolor.client.Classification`
    the catalogue keeps; no tritonclient here)."""

    labels: list[str]
    scores: list[float]
    class_ids: list[int]
    color_rgb: str
    color_ryb: str
    color_rgb_shares: list[float]
    color_ryb_shares: list[float]
    second_look: bool


@dataclass(frozen=True)
class FileSeen:
    """A file as a run found it; `moved_from` is the stored relative path of the same library
    it replaces (a moved or renamed file). `seen_at` and `missing_since` are a run's own (now,
    and not missing) except where `tricolor import` brings them from another catalogue."""

    library_id: int
    relative: bytes
    size: int
    mtime_ns: int
    moved_from: bytes | None = None
    seen_at: datetime | None = None
    missing_since: datetime | None = None


@dataclass
class PictureRecord:
    """One picture to store: its answer, or `error` (the server's reason), and its files;
    `labelled_at` is now, except for an answer `tricolor import` brings."""

    sha256: str
    size: int
    width: int | None
    height: int | None
    provenance: Provenance
    answer: Answer | None = None
    error: str | None = None
    files: list[FileSeen] = field(default_factory=list)
    labelled_at: datetime | None = None


@dataclass
class FilesRecord:
    """Files of a picture stored already, or on its way (duplicates, moves, touched files)."""

    sha256: str
    files: list[FileSeen]


@dataclass
class Touch:
    """Stored files found again unchanged: seen now, and no longer missing."""

    file_ids: list[int]


Record = PictureRecord | FilesRecord | Touch


@dataclass(frozen=True)
class StoredFile:
    """A stored path, with its picture's hash and how that picture was answered."""

    id: int
    relative: bytes
    size: int
    mtime_ns: int
    sha256: str
    fingerprint: str  # the picture's provenance
    refused: bool


@dataclass(frozen=True)
class StoredPicture:
    id: int
    fingerprint: str
    refused: bool
    files: tuple[tuple[int, bytes], ...]  # (library id, relative path), missing ones too


class CatalogueMissing(RuntimeError):
    """Searching a catalogue that was never made (no SQLite file, or an empty database)."""


def normalise_url(url: str) -> str:
    """`postgresql://` means psycopg 3 (SQLAlchemy's default driver would be psycopg2)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"not a database URL: {url!r} ({exc})") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in DIALECTS:
        raise ValueError(
            f"{parsed.get_backend_name()} is not supported: the catalogue is SQLite "
            "(sqlite:///FILE) or PostgreSQL (postgresql://USER@HOST/DB)"
        )
    return parsed.render_as_string(hide_password=False)


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def uploads_dir(url: str) -> Path:
    """The content-addressed folder for pictures added from the UI: beside a SQLite file,
    else in the user's data folder."""
    database = sqlite_path(url)
    return (database.parent if database is not None else user_data_dir()) / "images"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (search, the UI) never wait for writers
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint, safe in WAL
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_read_only_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _retried(exc: DBAPIError) -> bool:
    """PostgreSQL broke a deadlock or a serialisation conflict by aborting this transaction."""
    return getattr(exc.orig, "sqlstate", None) in RETRIED_SQLSTATES


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def searchable() -> Any:
    """What `pictures.searchable` holds: answered (not refused), with a file not missing."""
    return and_(
        pictures.c.error.is_(None),
        exists().where(files.c.picture_id == pictures.c.id, files.c.missing_since.is_(None)),
    )


def refresh_searchable(connection: Connection, picture_ids: Iterable[int]) -> None:
    """Set `pictures.searchable` anew for these pictures (after their files or answer changed)."""
    for chunk in chunks(sorted(picture_ids)):
        connection.execute(
            pictures.update().where(pictures.c.id.in_(chunk)).values(searchable=searchable())
        )


def _insert(connection: Connection, table: Table) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (SQLite and PostgreSQL alike)."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


class Catalogue:
    """An opened, migrated catalogue database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)
        self._provenance_ids: dict[str, int] = {}
        self._class_ids: dict[tuple[int, str], int] = {}

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- what the labeller needs to decide ----

    def library(self, name: str, root: str) -> int:
        """The library's id (made on first use); `root` is where this run finds it."""
        with self.engine.begin() as connection:
            upsert = _insert(connection, libraries).values(name=name, root=root)
            connection.execute(
                upsert.on_conflict_do_update(index_elements=["name"], set_={"root": root})
            )
            return connection.execute(
                select(libraries.c.id).where(libraries.c.name == name)
            ).scalar_one()

    def stored_files(self, library_id: int, relatives: Iterable[bytes]) -> dict[bytes, StoredFile]:
        """The stored files among `relatives` of one library, with size, mtime, hash and their
        picture's provenance and refusal (all a rescan needs of an unchanged file)."""
        wanted = sorted(set(relatives))
        found: dict[bytes, StoredFile] = {}
        with self.engine.connect() as connection:
            for chunk in chunks(wanted):
                query = (
                    select(
                        files.c.id,
                        files.c.relative_path,
                        files.c.size,
                        files.c.mtime_ns,
                        pictures.c.sha256,
                        provenances.c.fingerprint,
                        pictures.c.error.is_not(None),
                    )
                    .join(pictures, files.c.picture_id == pictures.c.id)
                    .join(provenances, pictures.c.provenance_id == provenances.c.id)
                    .where(files.c.library_id == library_id, files.c.relative_path.in_(chunk))
                )
                found.update({row[1]: StoredFile(*row) for row in connection.execute(query)})
        return found

    def stored_pictures(self, hashes: Iterable[str]) -> dict[str, StoredPicture]:
        """The stored pictures among `hashes`, with their provenance and files."""
        wanted = sorted(set(hashes))
        found: dict[str, StoredPicture] = {}
        with self.engine.connect() as connection:
            for chunk in chunks(wanted):
                rows = connection.execute(
                    select(
                        pictures.c.id,
                        pictures.c.sha256,
                        provenances.c.fingerprint,
                        pictures.c.error,
                    )
                    .join(provenances, pictures.c.provenance_id == provenances.c.id)
                    .where(pictures.c.sha256.in_(chunk))
                ).all()
                ids = [row.id for row in rows]
                stored: dict[int, list[tuple[int, bytes]]] = {}
                for file_row in connection.execute(
                    select(files.c.picture_id, files.c.library_id, files.c.relative_path)
                    .where(files.c.picture_id.in_(ids))
                    .order_by(files.c.id)
                ):
                    stored.setdefault(file_row.picture_id, []).append(
                        (file_row.library_id, file_row.relative_path)
                    )
                for row in rows:
                    found[row.sha256] = StoredPicture(
                        row.id,
                        row.fingerprint,
                        row.error is not None,
                        tuple(stored.get(row.id, ())),
                    )
        return found

    def mark_missing(
        self, library_id: int, before: datetime, mine: Callable[[bytes], bool] = lambda _: True
    ) -> int:
        """Mark the files of a library that no run has seen since `before` as missing (only
        those `mine` accepts: a shard's own share); returns how many."""
        stamp = now()
        marked = 0
        last_id = 0
        while True:
            with self.engine.begin() as connection:
                rows = connection.execute(
                    select(files.c.id, files.c.relative_path, files.c.picture_id)
                    .where(
                        files.c.library_id == library_id,
                        files.c.missing_since.is_(None),
                        files.c.seen_at < before,
                        files.c.id > last_id,
                    )
                    .order_by(files.c.id)
                    .limit(CHUNK)
                ).all()
                if not rows:
                    return marked
                last_id = rows[-1].id
                gone = [row for row in rows if mine(row.relative_path)]
                if gone:
                    connection.execute(
                        files.update()
                        .where(
                            files.c.id.in_([row.id for row in gone]),
                            files.c.missing_since.is_(None),
                        )
                        .values(missing_since=stamp)
                    )
                    refresh_searchable(connection, {row.picture_id for row in gone})
                marked += len(gone)

    # ---- the one writer ----

    def write(self, records: Sequence[Record]) -> list[FilesRecord]:
        """Store a batch in one transaction: pictures with their labels and colours, then
        files. Idempotent: a picture or file stored already is updated in place. Returns the
        files records whose picture is not stored (yet): nothing of those is written.

        Rows are locked in one order (classes, provenances, pictures by hash, files), so
        labellers writing into one PostgreSQL catalogue at once cannot deadlock on them; a
        transaction PostgreSQL aborts all the same (a conflict with another writer) is retried.
        """
        if not records:
            return []
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            provenance_ids: dict[str, int] = {}
            class_ids: dict[tuple[int, str], int] = {}
            try:
                with self.engine.begin() as connection:
                    unplaced = self._write(connection, records, provenance_ids, class_ids)
            except DBAPIError as exc:
                if attempt == WRITE_ATTEMPTS or not _retried(exc):
                    raise
                time.sleep(0.05 * attempt)
                continue
            # ids learnt in a transaction are kept only once it committed
            self._provenance_ids.update(provenance_ids)
            self._class_ids.update(class_ids)
            return unplaced
        raise AssertionError("unreachable")

    def _write(
        self,
        connection: Connection,
        records: Sequence[Record],
        provenance_ids: dict[str, int],
        class_ids: dict[tuple[int, str], int],
    ) -> list[FilesRecord]:
        labelled = sorted(
            (record for record in records if isinstance(record, PictureRecord)),
            key=lambda record: record.sha256,
        )
        self._write_pictures(connection, labelled, provenance_ids, class_ids)
        placed = [record for record in records if not isinstance(record, Touch)]
        ids = self._picture_ids(connection, sorted({record.sha256 for record in placed}))
        stamp = now()
        unplaced = [record for record in placed if record.sha256 not in ids]
        written = [
            (seen, ids[record.sha256])
            for record in placed
            if record.sha256 in ids
            for seen in record.files
        ]
        # the pictures whose searchability this transaction can change: those written, those
        # whose paths get other content, those whose missing files are found again
        changed = set(ids.values()) | self._pictures_at(connection, [seen for seen, _ in written])
        self._write_files(connection, written, stamp)
        touched = sorted(
            file_id
            for record in records
            if isinstance(record, Touch)
            for file_id in record.file_ids
        )
        for chunk in chunks(touched):
            changed.update(
                connection.execute(
                    select(files.c.picture_id).where(
                        files.c.id.in_(chunk), files.c.missing_since.is_not(None)
                    )
                ).scalars()
            )
            connection.execute(
                files.update()
                .where(files.c.id.in_(chunk))
                .values(seen_at=stamp, missing_since=None)
            )
        refresh_searchable(connection, changed)
        return unplaced

    @staticmethod
    def _pictures_at(connection: Connection, seen: list[FileSeen]) -> set[int]:
        """The pictures stored at these paths now."""
        paths = sorted({(file.library_id, file.relative) for file in seen})
        found: set[int] = set()
        for chunk in chunks(paths):
            found.update(
                connection.execute(
                    select(files.c.picture_id).where(
                        tuple_(files.c.library_id, files.c.relative_path).in_(chunk)
                    )
                ).scalars()
            )
        return found

    def _provenance_id(
        self, connection: Connection, provenance: Provenance, learnt: dict[str, int]
    ) -> int:
        fingerprint = provenance.fingerprint
        known = self._provenance_ids.get(fingerprint) or learnt.get(fingerprint)
        if known is not None:
            return known
        connection.execute(
            _insert(connection, provenances)
            .values(
                fingerprint=fingerprint,
                models=provenance.models,
                weights=provenance.weights,
                settings=provenance.settings,
                first_seen=now(),
            )
            .on_conflict_do_nothing(index_elements=["fingerprint"])
        )
        learnt[fingerprint] = connection.execute(
            select(provenances.c.id).where(provenances.c.fingerprint == fingerprint)
        ).scalar_one()
        return learnt[fingerprint]

    def _class_ids_for(
        self,
        connection: Connection,
        pairs: set[tuple[int, str]],
        learnt: dict[tuple[int, str], int],
    ) -> dict[tuple[int, str], int]:
        """The ids of `pairs`, made where missing."""
        missing = sorted(pairs - self._class_ids.keys() - learnt.keys())
        if missing:
            connection.execute(
                _insert(connection, classes).on_conflict_do_nothing(
                    index_elements=["class_index", "name"]
                ),
                [{"class_index": index, "name": name} for index, name in missing],
            )
            for chunk in chunks(missing):
                for row in connection.execute(
                    select(classes.c.id, classes.c.class_index, classes.c.name).where(
                        tuple_(classes.c.class_index, classes.c.name).in_(chunk)
                    )
                ):
                    learnt[(row.class_index, row.name)] = row.id
        return {**self._class_ids, **learnt}

    def _picture_ids(self, connection: Connection, hashes: Sequence[str]) -> dict[str, int]:
        ids: dict[str, int] = {}
        for chunk in chunks(hashes):
            rows = connection.execute(
                select(pictures.c.sha256, pictures.c.id).where(pictures.c.sha256.in_(chunk))
            )
            ids.update({row.sha256: row.id for row in rows})
        return ids

    def _write_pictures(
        self,
        connection: Connection,
        records: list[PictureRecord],
        provenance_ids: dict[str, int],
        class_ids: dict[tuple[int, str], int],
    ) -> None:
        if not records:
            return
        known_classes = self._class_ids_for(
            connection,
            {
                pair
                for record in records
                if record.answer is not None
                for pair in zip(record.answer.class_ids, record.answer.labels, strict=True)
            },
            class_ids,
        )
        stamp = now()
        rows = []
        for record in records:
            answer = record.answer
            top = (answer.class_ids[0], answer.labels[0]) if answer else None
            rows.append(
                {
                    "sha256": record.sha256,
                    "size": record.size,
                    "width": record.width,
                    "height": record.height,
                    "provenance_id": self._provenance_id(
                        connection, record.provenance, provenance_ids
                    ),
                    "labelled_at": record.labelled_at or stamp,
                    "error": record.error,
                    "top_class_id": known_classes[top] if top else None,
                    "top_score": answer.scores[0] if answer else None,
                    "color_rgb": answer.color_rgb if answer else None,
                    "color_ryb": answer.color_ryb if answer else None,
                    "second_look": answer.second_look if answer else None,
                }
            )
        upsert = _insert(connection, pictures)
        connection.execute(  # executemany: SQLAlchemy batches the rows under the bound limits
            upsert.on_conflict_do_update(
                index_elements=["sha256"],
                set_={name: upsert.excluded[name] for name in rows[0] if name != "sha256"},
            ),
            rows,
        )
        ids = self._picture_ids(connection, [record.sha256 for record in records])
        for chunk in chunks(sorted(ids.values())):
            connection.execute(
                picture_labels.delete().where(picture_labels.c.picture_id.in_(chunk))
            )
            connection.execute(
                picture_colours.delete().where(picture_colours.c.picture_id.in_(chunk))
            )
        label_rows, colour_rows = [], []
        for record in records:
            answer = record.answer
            if answer is None:
                continue
            picture_id = ids[record.sha256]
            for rank, (class_index, name, score) in enumerate(
                zip(answer.class_ids, answer.labels, answer.scores, strict=True)
            ):
                label_rows.append(
                    {
                        "picture_id": picture_id,
                        "rank": rank,
                        "class_id": known_classes[(class_index, name)],
                        "score": score,
                    }
                )
            for palette, shares in (
                ("rgb", answer.color_rgb_shares),
                ("ryb", answer.color_ryb_shares),
            ):
                colour_rows.extend(
                    {"picture_id": picture_id, "palette": palette, "colour": colour, "share": share}
                    for colour, share in enumerate(shares)
                    if share > 0
                )
        if label_rows:
            connection.execute(picture_labels.insert(), label_rows)
        if colour_rows:
            connection.execute(picture_colours.insert(), colour_rows)

    @staticmethod
    def _write_files(
        connection: Connection, placed: list[tuple[FileSeen, int]], stamp: datetime
    ) -> None:
        """The files' rows (made, or updated: new content at a known path), in path order; a
        move also drops the row of the path it left (the file is here now, not gone)."""
        if not placed:
            return
        rows = {
            (seen.library_id, seen.relative): {
                "library_id": seen.library_id,
                "relative_path": seen.relative,
                "picture_id": picture_id,
                "size": seen.size,
                "mtime_ns": seen.mtime_ns,
                "seen_at": seen.seen_at or stamp,
                "missing_since": seen.missing_since,
            }
            for seen, picture_id in placed
        }
        upsert = _insert(connection, files)
        connection.execute(
            upsert.on_conflict_do_update(
                index_elements=["library_id", "relative_path"],
                set_={
                    name: upsert.excluded[name]
                    for name in ("picture_id", "size", "mtime_ns", "seen_at", "missing_since")
                },
            ),
            [rows[key] for key in sorted(rows)],
        )
        for seen, picture_id in placed:
            if seen.moved_from is not None and seen.moved_from != seen.relative:
                connection.execute(
                    files.delete().where(
                        files.c.library_id == seen.library_id,
                        files.c.relative_path == seen.moved_from,
                        files.c.picture_id == picture_id,
                    )
                )


def open_catalogue(url: str | None = None, *, create: bool = True) -> Catalogue:
    """Connect to the catalogue at `url` (default: `TRICOLOR_DB` or the SQLite file) and bring
    its schema to the newest migration. With `create=False` (searching) a catalogue that was
    never made is an error (`CatalogueMissing`) instead of a new, empty one, and a SQLite file
    this user cannot write is opened read-only (it must be at the newest schema)."""
    from tricolor.catalogue.migrations import current_revision, head_revision, upgrade  # noqa: PLC0415

    target = normalise_url(url or catalogue_url())
    database = sqlite_path(target)
    read_only = False
    if database is not None:
        if not database.exists():
            if not create:
                raise CatalogueMissing(
                    f"no catalogue at {database}: label some images first "
                    "(`tricolor label PATH`), or name one with --db / TRICOLOR_DB"
                )
            database.parent.mkdir(parents=True, exist_ok=True)
        read_only = not create and not (
            os.access(database, os.W_OK) and os.access(database.parent, os.W_OK)
        )
    if read_only:
        assert database is not None
        # immutable: no -wal/-shm to make beside a file in a folder this user cannot write
        target = f"sqlite:///file:{database.resolve()}?mode=ro&immutable=1&uri=true"
    engine = create_engine(target, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_read_only_pragmas if read_only else _sqlite_pragmas)
    if not create or read_only:
        revision = current_revision(engine)
        if revision is None:
            engine.dispose()
            raise CatalogueMissing(
                f"{describe_url(target)} holds no catalogue: label some images into it first "
                "(`tricolor label PATH --db URL`)"
            )
        if read_only and revision != head_revision():
            engine.dispose()
            raise CatalogueMissing(
                f"{database} is read-only and at schema {revision}, not {head_revision()}: "
                "open it once with write access (`tricolor label`) to migrate it"
            )
    if not read_only:
        upgrade(engine)
    return Catalogue(engine)
