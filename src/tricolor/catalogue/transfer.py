"""`tricolor export` and `tricolor import`: a catalogue as JSON Lines, one picture a line.

A line holds the picture (hash, size, upright width and height), its answer or the server's
reason for refusing it, the provenance of that answer (models, weights, settings, when) and
its files (library name and root, the relative path as stored, size, mtime, when seen, since
when missing). A relative path that is not UTF-8 travels as base64 of its bytes beside its
escaped text, so it comes back byte for byte. Import is idempotent by SHA-256: a picture
stored already keeps its answer (only files it lacks are added), provenance is kept as
exported, and nothing is sent to a server. Every line is checked before anything is written:
a bad line is named by file and line number, and the catalogue is left as it was.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select

from tricolor.catalogue.schema import (
    files,
    libraries,
    pictures,
    provenances,
)
from tricolor.catalogue.search import labels_and_shares
from tricolor.catalogue.store import (
    PALETTES,
    Answer,
    Catalogue,
    FileSeen,
    FilesRecord,
    PictureRecord,
    Provenance,
    _insert,
    as_utc,
    chunks,
    shown_relative,
)

FORMAT = 1  # each line's "format": a reader refuses lines of a format it does not know
BATCH = 500  # pictures per read on export, per transaction on import
SHA256 = re.compile(r"[0-9a-f]{64}")


class BadLine(ValueError):
    """A line `tricolor import` cannot take: `where` names its file and line."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")


# ---- export ----


def _relative_json(relative: bytes) -> dict[str, str]:
    try:
        return {"relative_path": relative.decode("utf-8")}
    except UnicodeDecodeError:
        return {
            "relative_path": shown_relative(relative),
            "relative_path_base64": base64.b64encode(relative).decode("ascii"),
        }


def _stamp(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment is not None else None


def export_lines(catalogue: Catalogue) -> Iterator[str]:
    """Every picture as one JSON line, in id order, read `BATCH` pictures at a time."""
    last_id = 0
    with catalogue.engine.connect() as connection:
        while True:
            rows = connection.execute(
                select(
                    pictures, provenances.c.models, provenances.c.weights, provenances.c.settings
                )
                .join(provenances, provenances.c.id == pictures.c.provenance_id)
                .where(pictures.c.id > last_id)
                .order_by(pictures.c.id)
                .limit(BATCH)
            ).all()
            if not rows:
                return
            last_id = rows[-1].id
            ids = [row.id for row in rows]
            labels, shares = labels_and_shares(connection, ids)
            placed: dict[int, list[dict[str, Any]]] = {picture_id: [] for picture_id in ids}
            for file in connection.execute(
                select(files, libraries.c.name, libraries.c.root)
                .join(libraries, libraries.c.id == files.c.library_id)
                .where(files.c.picture_id.in_(ids))
                .order_by(files.c.id)
            ):
                placed[file.picture_id].append(
                    {
                        "library": file.name,
                        "root": file.root,
                        **_relative_json(file.relative_path),
                        "size": file.size,
                        "mtime_ns": file.mtime_ns,
                        "seen_at": _stamp(file.seen_at),
                        "missing_since": _stamp(file.missing_since),
                    }
                )
            for row in rows:
                answer = None
                if row.error is None:
                    answer = {
                        "labels": [label.name for label in labels[row.id]],
                        "scores": [label.score for label in labels[row.id]],
                        "class_ids": [label.class_index for label in labels[row.id]],
                        "color_rgb": row.color_rgb,
                        "color_ryb": row.color_ryb,
                        "color_rgb_shares": shares[row.id]["rgb"],
                        "color_ryb_shares": shares[row.id]["ryb"],
                        "second_look": bool(row.second_look),
                    }
                line = {
                    "format": FORMAT,
                    "sha256": row.sha256,
                    "size": row.size,
                    "width": row.width,
                    "height": row.height,
                    "answer": answer,
                    "error": row.error,
                    "provenance": {
                        "models": row.models,
                        "weights": row.weights,
                        "settings": row.settings,
                        "labelled_at": _stamp(row.labelled_at),
                    },
                    "files": placed[row.id],
                }
                yield json.dumps(line, separators=(",", ":"), ensure_ascii=False)


def export(catalogue: Catalogue, out: IO[str]) -> int:
    """Write the catalogue to `out`; returns the number of pictures."""
    count = 0
    for line in export_lines(catalogue):
        out.write(line + "\n")
        count += 1
    return count


# ---- import ----


@dataclass(frozen=True)
class FileLine:
    library: str
    root: str
    relative: bytes
    size: int
    mtime_ns: int
    seen_at: datetime | None
    missing_since: datetime | None


@dataclass(frozen=True)
class PictureLine:
    record: PictureRecord  # files empty: they need library ids, made on write
    files: list[FileLine]


def _need(mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in mapping:
        raise ValueError(f"{what} has no {key!r}")
    value = mapping[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
        raise ValueError(f"{what}'s {key!r} is {value!r}, not of the right kind")
    return value


def _optional(mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    return None if mapping.get(key) is None else _need(mapping, key, kind, what)


def _moment(mapping: dict[str, Any], key: str, what: str) -> datetime | None:
    text = _optional(mapping, key, str, what)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{what}'s {key!r} is not an ISO 8601 time: {text!r}") from exc
    if moment.tzinfo is None:
        raise ValueError(f"{what}'s {key!r} has no time zone: {text!r}")
    return moment


def _answer(raw: dict[str, Any]) -> Answer:
    what = "the answer"
    labels = _need(raw, "labels", list, what)
    scores = _need(raw, "scores", list, what)
    class_ids = _need(raw, "class_ids", list, what)
    if not labels or not len(labels) == len(scores) == len(class_ids):
        raise ValueError("the answer's labels, scores and class_ids differ in length (or none)")
    if not all(isinstance(label, str) for label in labels):
        raise ValueError("the answer's labels are not all text")
    if not all(isinstance(s, int | float) and not isinstance(s, bool) for s in scores):
        raise ValueError("the answer's scores are not all numbers")
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in class_ids):
        raise ValueError("the answer's class_ids are not all integers")
    colours = {}
    for name, palette in PALETTES.items():
        colour = _need(raw, f"color_{name}", str, what)
        if colour not in palette.hex_codes:
            raise ValueError(f"the answer's color_{name} {colour!r} is not on the palette")
        shares = _need(raw, f"color_{name}_shares", list, what)
        if len(shares) != len(palette.hex_codes) or not all(
            isinstance(s, int | float) and not isinstance(s, bool) and 0 <= s <= 1 for s in shares
        ):
            raise ValueError(
                f"the answer's color_{name}_shares are not "
                f"{len(palette.hex_codes)} shares in [0, 1]"
            )
        colours[name] = (colour, [float(s) for s in shares])
    return Answer(
        labels=labels,
        scores=[float(s) for s in scores],
        class_ids=class_ids,
        color_rgb=colours["rgb"][0],
        color_ryb=colours["ryb"][0],
        color_rgb_shares=colours["rgb"][1],
        color_ryb_shares=colours["ryb"][1],
        second_look=bool(_need(raw, "second_look", bool, what)),
    )


def _file(raw: Any, index: int) -> FileLine:
    what = f"file {index + 1}"
    if not isinstance(raw, dict):
        raise ValueError(f"{what} is not an object")
    if raw.get("relative_path_base64") is not None:
        try:
            relative = base64.b64decode(
                _need(raw, "relative_path_base64", str, what), validate=True
            )
        except binascii.Error as exc:
            raise ValueError(f"{what}'s 'relative_path_base64' is not base64") from exc
    else:
        relative = _need(raw, "relative_path", str, what).encode("utf-8", "surrogateescape")
    if not relative or relative.startswith(b"/"):
        raise ValueError(f"{what}'s relative path {relative!r} is empty or absolute")
    return FileLine(
        library=_need(raw, "library", str, what),
        root=_need(raw, "root", str, what),
        relative=relative,
        size=_need(raw, "size", int, what),
        mtime_ns=_need(raw, "mtime_ns", int, what),
        seen_at=_moment(raw, "seen_at", what),
        missing_since=_moment(raw, "missing_since", what),
    )


def parse_line(text: str) -> PictureLine:
    """One exported line, checked; a ValueError says what is wrong with it."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    if raw.get("format") != FORMAT:
        raise ValueError(f"format {raw.get('format')!r} is not {FORMAT} (tricolor export's)")
    sha256 = _need(raw, "sha256", str, "the picture")
    if not SHA256.fullmatch(sha256):
        raise ValueError(f"sha256 {sha256!r} is not 64 lower-case hex digits")
    provenance = _need(raw, "provenance", dict, "the picture")
    error = _optional(raw, "error", str, "the picture")
    answer = _optional(raw, "answer", dict, "the picture")
    if (error is None) == (answer is None):
        raise ValueError("a picture has either an answer or an error, not both or neither")
    record = PictureRecord(
        sha256=sha256,
        size=_need(raw, "size", int, "the picture"),
        width=_optional(raw, "width", int, "the picture"),
        height=_optional(raw, "height", int, "the picture"),
        provenance=Provenance(
            models=_need(provenance, "models", dict, "the provenance"),
            weights=_need(provenance, "weights", str, "the provenance"),
            settings=_need(provenance, "settings", dict, "the provenance"),
        ),
        answer=_answer(answer) if answer is not None else None,
        error=error,
        labelled_at=_moment(provenance, "labelled_at", "the provenance"),
    )
    placed = _need(raw, "files", list, "the picture")
    return PictureLine(record, [_file(item, index) for index, item in enumerate(placed)])


def read_lines(paths: Iterable[Path]) -> Iterator[tuple[str, PictureLine]]:
    """(`FILE:LINE`, the parsed line) for every non-blank line; BadLine at a bad one."""
    for path in paths:
        with path.open(encoding="utf-8", errors="strict", newline="") as lines:
            number = 0
            try:
                for number, text in enumerate(lines, start=1):  # noqa: B007
                    if text.strip():
                        try:
                            yield f"{path}:{number}", parse_line(text)
                        except ValueError as exc:
                            raise BadLine(f"{path}: line {number}", str(exc)) from None
            except UnicodeDecodeError as exc:
                raise BadLine(f"{path}: line {number + 1}", f"not UTF-8 ({exc})") from None


@dataclass
class Imported:
    pictures: int = 0  # new pictures stored
    kept: int = 0  # pictures stored already (their answer kept)
    files: int = 0  # file rows written (made or updated)


def _library_ids(catalogue: Catalogue, wanted: dict[str, str], known: dict[str, int]) -> None:
    """Ids of the libraries named in `wanted` ({name: root}), made where missing (a library
    the catalogue holds keeps its root)."""
    missing = sorted(set(wanted) - known.keys())
    if not missing:
        return
    with catalogue.engine.begin() as connection:
        connection.execute(
            _insert(connection, libraries).on_conflict_do_nothing(index_elements=["name"]),
            [{"name": name, "root": wanted[name]} for name in missing],
        )
        for chunk in chunks(missing):
            for row in connection.execute(
                select(libraries.c.id, libraries.c.name).where(libraries.c.name.in_(chunk))
            ):
                known[row.name] = row.id


def import_files(catalogue: Catalogue, paths: list[Path]) -> Imported:
    """Check every line of `paths`, then store them `BATCH` pictures a transaction."""
    for _ in read_lines(paths):
        pass
    done = Imported()
    known: dict[str, int] = {}
    batch: list[PictureLine] = []
    for _, line in read_lines(paths):
        batch.append(line)
        if len(batch) == BATCH:
            _store(catalogue, batch, known, done)
            batch = []
    _store(catalogue, batch, known, done)
    return done


def _store(
    catalogue: Catalogue, batch: list[PictureLine], known: dict[str, int], done: Imported
) -> None:
    if not batch:
        return
    _library_ids(catalogue, {f.library: f.root for line in batch for f in line.files}, known)
    stored = catalogue.stored_pictures(line.record.sha256 for line in batch)
    records: list[PictureRecord | FilesRecord] = []
    in_batch: set[str] = set()
    for line in batch:
        seen = [
            FileSeen(
                known[f.library],
                f.relative,
                f.size,
                f.mtime_ns,
                seen_at=f.seen_at,
                missing_since=f.missing_since,
            )
            for f in line.files
        ]
        done.files += len(seen)
        if line.record.sha256 in stored or line.record.sha256 in in_batch:
            done.kept += 1
            records.append(FilesRecord(line.record.sha256, seen))
        else:
            done.pictures += 1
            in_batch.add(line.record.sha256)
            line.record.files = seen
            records.append(line.record)
    catalogue.write(records)
