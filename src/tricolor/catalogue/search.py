"""Find pictures in the catalogue by top-1 label, dominant colour or colour share.

Every filter combines with AND; the order is the top-1 score descending, then the path. Each
picture appears once, under its first path, with its other paths as `duplicates`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.engine import Connection

from tricolor.catalogue.store import (
    PALETTES,
    Answer,
    Catalogue,
    as_utc,
    classes,
    files,
    picture_colours,
    picture_labels,
    pictures,
    provenances,
)

DEFAULT_LIMIT = 9
# shares travel as float32: 0.7 arrives as 0.69999999; "at least 0.7" still holds for it
SHARE_TOLERANCE = 1e-6


class SearchError(ValueError):
    """A query the catalogue cannot answer (an unknown label, a colour off the palette)."""


def resolve_colour(palette_name: str, text: str) -> int:
    """The palette index of a hex code (`#FE2712`, `fe2712`) or a colour name (`red`)."""
    palette = PALETTES[palette_name]
    wanted = text.strip().lower()
    for index, (code, name) in enumerate(zip(palette.hex_codes, palette.names, strict=True)):
        if wanted in (code.lower(), code[1:].lower(), name):
            return index
    valid = ", ".join(
        f"{code} {name}" for code, name in zip(palette.hex_codes, palette.names, strict=True)
    )
    raise SearchError(
        f"{text!r} is not on the {palette_name.upper()} palette; use a hex code or a name: {valid}"
    )


@dataclass(frozen=True)
class Query:
    label: str | None = None
    rgb: str | None = None
    ryb: str | None = None
    min_share: float | None = None  # with a colour: "at least this fraction of the pixels"
    min_score: float | None = None  # the top-1 probability at least this
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    def colours(self) -> dict[str, int]:
        """{palette: index} of the colour filters given."""
        chosen = {"rgb": self.rgb, "ryb": self.ryb}
        return {name: resolve_colour(name, text) for name, text in chosen.items() if text}

    def describe(self) -> str:
        parts = []
        if self.label:
            parts.append(f"label {self.label!r}")
        for name, index in self.colours().items():
            palette = PALETTES[name]
            colour = f"{palette.hex_codes[index]} {palette.names[index]}"
            if self.min_share is None:
                parts.append(f"dominant {name.upper()} {colour}")
            else:
                parts.append(f"at least {self.min_share:.0%} {name.upper()} {colour}")
        if self.min_score is not None:
            parts.append(f"top-1 score >= {self.min_score}")
        return " and ".join(parts) or "everything"


@dataclass(frozen=True)
class Hit(Answer):
    """One matching picture, in the shape of `tricolor search --json`'s elements: the stored
    answer, plus where the picture is and where the answer came from."""

    path: str
    sha256: str
    size: int
    width: int | None
    height: int | None
    provenance: dict[str, Any]
    duplicates: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        fields = dict(self.__dict__)
        return {"path": fields.pop("path"), **fields}


@dataclass
class Page:
    total: int
    hits: list[Hit]


@dataclass
class Refusal:
    path: str
    sha256: str
    error: str
    provenance: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        fields = dict(self.__dict__)
        return {"path": fields.pop("path"), **fields}


def label_counts(catalogue: Catalogue) -> list[tuple[str, int]]:
    """Every top-1 label the catalogue holds with its number of pictures, most first."""
    count = func.count(pictures.c.id)
    query = (
        select(classes.c.name, count)
        .join(pictures, pictures.c.top_class_id == classes.c.id)
        .where(exists().where(files.c.picture_id == pictures.c.id))
        .group_by(classes.c.name)
        .order_by(count.desc(), classes.c.name)
    )
    with catalogue.engine.connect() as connection:
        return [(row[0], row[1]) for row in connection.execute(query)]


def _class_ids(connection: Connection, catalogue: Catalogue, label: str) -> list[int]:
    ids = (
        connection.execute(select(classes.c.id).where(func.lower(classes.c.name) == label.lower()))
        .scalars()
        .all()
    )
    if ids:
        return list(ids)
    held = [name for name, _ in label_counts(catalogue)]
    close = difflib.get_close_matches(label, held, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    listed = ", ".join(f"{name} ({count})" for name, count in label_counts(catalogue))
    raise SearchError(
        f"unknown label {label!r}{hint}; the catalogue's top-1 labels: {listed or 'none yet'}"
    )


def _validate(query: Query) -> None:
    if query.limit < 1 or query.offset < 0:
        raise SearchError("--limit must be >= 1 and --offset >= 0")
    if query.min_share is not None:
        if not 0 < query.min_share <= 1:
            raise SearchError(f"--min-share must be in (0, 1], not {query.min_share}")
        if not query.rgb and not query.ryb:
            raise SearchError("--min-share needs a colour: --rgb COLOUR or --ryb COLOUR")
    if query.min_score is not None and not 0 <= query.min_score <= 1:
        raise SearchError(f"--min-score must be in [0, 1], not {query.min_score}")


def _first_files():
    """Each picture's first file (the lowest id): the path a hit is shown under."""
    first = (
        select(files.c.picture_id, func.min(files.c.id).label("file_id"))
        .group_by(files.c.picture_id)
        .subquery("first")
    )
    return first, files.alias("shown")


def search(catalogue: Catalogue, query: Query) -> Page:
    _validate(query)
    colours = query.colours()
    first, shown = _first_files()
    with catalogue.engine.connect() as connection:
        conditions = [pictures.c.error.is_(None)]
        if query.label:
            conditions.append(
                pictures.c.top_class_id.in_(_class_ids(connection, catalogue, query.label))
            )
        if query.min_score is not None:
            conditions.append(pictures.c.top_score >= query.min_score)
        for name, index in colours.items():
            if query.min_share is None:
                column = pictures.c.color_rgb if name == "rgb" else pictures.c.color_ryb
                conditions.append(column == PALETTES[name].hex_codes[index])
            else:
                conditions.append(
                    exists().where(
                        picture_colours.c.picture_id == pictures.c.id,
                        picture_colours.c.palette == name,
                        picture_colours.c.colour == index,
                        picture_colours.c.share >= query.min_share - SHARE_TOLERANCE,
                    )
                )
        matching = (
            select(pictures.c.id, shown.c.path, pictures.c.top_score)
            .join(first, first.c.picture_id == pictures.c.id)
            .join(shown, shown.c.id == first.c.file_id)
            .where(and_(*conditions))
        )
        total = connection.execute(
            select(func.count()).select_from(matching.subquery())
        ).scalar_one()
        page = connection.execute(
            matching.order_by(pictures.c.top_score.desc(), shown.c.path)
            .limit(query.limit)
            .offset(query.offset)
        ).all()
        hits = _hits(connection, [(row.id, row.path) for row in page])
    return Page(total=total, hits=hits)


def _provenance_json(row: Any) -> dict[str, Any]:
    return {
        "models": row.models,
        "weights": row.weights,
        "settings": row.settings,
        "labelled_at": as_utc(row.labelled_at).isoformat(),
    }


def _hits(connection: Connection, shown: list[tuple[int, str]]) -> list[Hit]:
    ids = [picture_id for picture_id, _ in shown]
    if not ids:
        return []
    rows = {
        row.id: row
        for row in connection.execute(
            select(pictures, provenances.c.models, provenances.c.weights, provenances.c.settings)
            .join(provenances, pictures.c.provenance_id == provenances.c.id)
            .where(pictures.c.id.in_(ids))
        )
    }
    labels: dict[int, list[Any]] = {picture_id: [] for picture_id in ids}
    for row in connection.execute(
        select(
            picture_labels.c.picture_id,
            classes.c.name,
            classes.c.class_index,
            picture_labels.c.score,
        )
        .join(classes, classes.c.id == picture_labels.c.class_id)
        .where(picture_labels.c.picture_id.in_(ids))
        .order_by(picture_labels.c.picture_id, picture_labels.c.rank)
    ):
        labels[row.picture_id].append(row)
    shares = {
        picture_id: {name: [0.0] * len(palette.hex_codes) for name, palette in PALETTES.items()}
        for picture_id in ids
    }
    for row in connection.execute(
        select(picture_colours).where(picture_colours.c.picture_id.in_(ids))
    ):
        shares[row.picture_id][row.palette][row.colour] = row.share
    paths: dict[int, list[str]] = {picture_id: [] for picture_id in ids}
    for row in connection.execute(
        select(files.c.picture_id, files.c.path)
        .where(files.c.picture_id.in_(ids))
        .order_by(files.c.id)
    ):
        paths[row.picture_id].append(row.path)
    hits = []
    for picture_id, path in shown:
        row = rows[picture_id]
        hits.append(
            Hit(
                path=path,
                sha256=row.sha256,
                size=row.size,
                width=row.width,
                height=row.height,
                labels=[label.name for label in labels[picture_id]],
                scores=[label.score for label in labels[picture_id]],
                class_ids=[label.class_index for label in labels[picture_id]],
                color_rgb=row.color_rgb,
                color_ryb=row.color_ryb,
                color_rgb_shares=shares[picture_id]["rgb"],
                color_ryb_shares=shares[picture_id]["ryb"],
                second_look=bool(row.second_look),
                provenance=_provenance_json(row),
                duplicates=[other for other in paths[picture_id] if other != path],
            )
        )
    return hits


def refusals(
    catalogue: Catalogue, limit: int | None = None, offset: int = 0
) -> tuple[int, list[Refusal]]:
    """The files whose content the server refused, with its reason, by path."""
    query = (
        select(
            files.c.path,
            pictures.c.sha256,
            pictures.c.error,
            pictures.c.labelled_at,
            provenances.c.models,
            provenances.c.weights,
            provenances.c.settings,
        )
        .join(pictures, files.c.picture_id == pictures.c.id)
        .join(provenances, pictures.c.provenance_id == provenances.c.id)
        .where(pictures.c.error.is_not(None))
        .order_by(files.c.path)
    )
    with catalogue.engine.connect() as connection:
        total = connection.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = connection.execute(query.limit(limit).offset(offset)).all()
    return total, [Refusal(row.path, row.sha256, row.error, _provenance_json(row)) for row in rows]
