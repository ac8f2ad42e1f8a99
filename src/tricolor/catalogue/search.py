"""Find pictures in the catalogue by top-1 label, dominant colour or colour share.

Every filter combines with AND; the order is the top-1 score descending, then the path. Each
picture appears once, under its first file that is not missing, with its other such files as
`duplicates`; a picture whose files are all missing is not listed (`missing_files` lists them).
All query building is here: the CLI and the UI only make a `Query`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, select, true
from sqlalchemy.engine import Connection

from tricolor.catalogue.schema import (
    classes,
    files,
    libraries,
    picture_colours,
    picture_labels,
    pictures,
    provenances,
)
from tricolor.catalogue.store import (
    PALETTES,
    Answer,
    Catalogue,
    as_utc,
    chunks,
    local_path,
    shown_path,
    shown_relative,
)

DEFAULT_LIMIT = 9
# the total of matches is counted up to the next multiple of this past the page's end ("more
# than 1,000 matches"): a count that follows the page, not the catalogue
COUNT_STEP = 1000
# a share filter matching fewer pictures than this is looked up first (the share index, then
# each picture by id); a larger one is checked picture by picture along the page's order
FEW_SHARES = 10_000
# shares travel as float32: 0.7 arrives as 0.69999999; "at least 0.7" still holds for it
SHARE_TOLERANCE = 1e-6


class SearchError(ValueError):
    """A query the catalogue cannot answer (a colour off the palette, a bad bound)."""


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

    path: str  # the library's root joined with the relative path, undecodable bytes escaped
    sha256: str
    size: int
    width: int | None
    height: int | None
    provenance: dict[str, Any]
    library: str = ""
    relative_path: str = ""
    local_path: str = ""  # opens the file on this host (not in the JSON: it is `path`)
    duplicates: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        fields = dict(self.__dict__)
        fields.pop("local_path")
        return {"path": fields.pop("path"), **fields}


@dataclass
class Page:
    total: int  # the matches, or where `capped`, the count it stopped at (there are more)
    hits: list[Hit]
    capped: bool = False

    def matches(self, hidden: int = 0) -> str:
        """The total as shown: "1,234", or "more than 1,000" where the count stopped."""
        return f"more than {self.total - hidden:,}" if self.capped else f"{self.total - hidden:,}"

    def has_more(self, shown_to: int) -> bool:
        """Are there matches after the first `shown_to`?"""
        return self.capped or shown_to < self.total


@dataclass
class Refusal:
    path: str
    sha256: str
    error: str
    provenance: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        fields = dict(self.__dict__)
        return {"path": fields.pop("path"), **fields}


@dataclass
class MissingFile:
    path: str
    library: str
    relative_path: str
    sha256: str
    missing_since: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def label_counts(catalogue: Catalogue) -> list[tuple[str, int]]:
    """Every top-1 label the catalogue holds with its number of pictures, most first."""
    count = func.count(pictures.c.id)
    query = (
        select(classes.c.name, count)
        .join(pictures, pictures.c.top_class_id == classes.c.id)
        .where(pictures.c.searchable == true())
        .group_by(classes.c.name)
        .order_by(count.desc(), classes.c.name)
    )
    with catalogue.engine.connect() as connection:
        return [(row[0], row[1]) for row in connection.execute(query)]


def _class_ids(connection: Connection, label: str) -> list[int]:
    """The classes named `label` (any case); none where no picture was ever given it."""
    query = select(classes.c.id).where(func.lower(classes.c.name) == label.lower())
    return list(connection.execute(query).scalars().all())


def close_labels(catalogue: Catalogue, label: str) -> tuple[list[str], list[tuple[str, int]]]:
    """For a label nothing matches: the catalogue's labels like it, and all its labels."""
    held = label_counts(catalogue)
    return difflib.get_close_matches(label, [name for name, _ in held], n=3), held


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


@dataclass
class Filters:
    """A query's filters on `pictures`, each served by one of its indexes; and, where a share
    filter matches many pictures and nothing rarer is asked, that filter's probe and its range
    of the share index, which the count walks instead: there `COUNT_STEP` matches take as many
    steps, where the probe along the score index takes a step per picture tried (six per match
    for a share of 0.2)."""

    conditions: list[Any]
    count_from_shares: tuple[Any, list[Any]] | None = None

    def count(self, cap: int) -> Any:
        """At most `cap` + 1 of the matches, counted (`count_statement`)."""
        if self.count_from_shares is None:
            return count_statement(self.conditions, cap)
        probe, matching = self.count_from_shares
        rest = [condition for condition in self.conditions if condition is not probe]
        return count_statement(rest, cap, from_shares=matching)


def _filters(connection: Connection, query: Query) -> Filters:
    filters = Filters([pictures.c.searchable == true()])  # the leading column of every index
    conditions = filters.conditions
    if query.label:
        conditions.append(pictures.c.top_class_id.in_(_class_ids(connection, query.label)))
    if query.min_score is not None:
        conditions.append(pictures.c.top_score >= query.min_score)
    for name, index in query.colours().items():
        if query.min_share is None:
            column = pictures.c.color_rgb if name == "rgb" else pictures.c.color_ryb
            conditions.append(column == PALETTES[name].hex_codes[index])
            continue
        matching = _share_range(name, index, query.min_share)
        if _few(connection, matching):
            conditions.append(
                pictures.c.id.in_(select(picture_colours.c.picture_id).where(*matching))
            )
            continue
        probe = (
            select(picture_colours.c.picture_id)
            .where(picture_colours.c.picture_id == pictures.c.id, *matching)
            # a probe per picture on PostgreSQL too: without an OFFSET it turns the EXISTS into
            # a join hashing every matching share (48 ms, not 12, beside a label at 1,000,000)
            .offset(0)
            .correlate(pictures)  # also where the count walks another palette's shares
            .exists()
        )
        conditions.append(probe)
        if filters.count_from_shares is None and not query.label and query.min_score is None:
            filters.count_from_shares = (probe, matching)
    return filters


def _share_range(palette: str, colour: int, min_share: float) -> list[Any]:
    """At least `min_share` of the pixels are `colour`: a range of the share index."""
    shares = picture_colours.c
    return [
        shares.palette == palette,
        shares.colour == colour,
        shares.share >= min_share - SHARE_TOLERANCE,
    ]


def _few(connection: Connection, matching: list[Any]) -> bool:
    """Fewer than `FEW_SHARES` shares match (counted on the share index): their ids are looked
    up first, then each picture by id. Many: a probe of each picture walked in the page's
    order (its primary key) finds a page after a few probes, where an id list of a fifth of
    the catalogue would first be built whole."""
    few = select(picture_colours.c.picture_id).where(*matching).limit(FEW_SHARES).subquery()
    return connection.execute(select(func.count()).select_from(few)).scalar_one() < FEW_SHARES


def count_statement(
    conditions: list[Any], cap: int | None = None, from_shares: list[Any] | None = None
) -> Any:
    """How many pictures match; with `cap`, at most `cap` + 1 (more than `cap` are not counted),
    walking the share index range `from_shares` (`Filters.count`) if given."""
    if cap is None:
        return select(func.count()).select_from(pictures).where(and_(*conditions))
    if from_shares is None:
        matching = select(pictures.c.id).where(and_(*conditions))
    else:
        matching = (
            select(picture_colours.c.picture_id)
            .join(pictures, pictures.c.id == picture_colours.c.picture_id)
            .where(*from_shares, *conditions)
        )
    return select(func.count()).select_from(matching.limit(cap + 1).subquery())


def scores_statement(conditions: list[Any], limit: int, offset: int) -> Any:
    """The page's top-1 scores, in the order of the score index (ids break ties)."""
    return (
        select(pictures.c.top_score)
        .where(and_(*conditions))
        .order_by(pictures.c.top_score.desc(), pictures.c.id.desc())
        .limit(limit)
        .offset(offset)
    )


def window_statement(conditions: list[Any], lowest: float, highest: float) -> Any:
    """The pictures scored from `lowest` to `highest` (the page, and its ties on either end) in
    the order search promises: top-1 score descending, then the path each is shown under (its
    first file that is not missing)."""
    first_file = (
        select(func.min(files.c.id))
        .where(files.c.picture_id == pictures.c.id, files.c.missing_since.is_(None))
        .scalar_subquery()
    )
    shown = files.alias("shown")
    return (
        select(pictures.c.id)
        .join(shown, shown.c.id == first_file)
        .join(libraries, libraries.c.id == shown.c.library_id)
        .where(and_(*conditions), pictures.c.top_score.between(lowest, highest))
        .order_by(pictures.c.top_score.desc(), libraries.c.root, shown.c.relative_path)
    )


def search(catalogue: Catalogue, query: Query) -> Page:
    """One page of matches. Its ids come from `pictures` alone, walked in the order of an index
    on what is filtered and sorted; only the page's window (its scores, ties included) is
    joined to its paths to order ties by path, and the total is counted up to `COUNT_STEP`
    past the page, so the cost follows the page, not the catalogue.
    """
    _validate(query)
    cap = (query.offset + query.limit) // COUNT_STEP * COUNT_STEP + COUNT_STEP
    with catalogue.engine.connect() as connection:
        filters = _filters(connection, query)
        conditions = filters.conditions
        counted = connection.execute(filters.count(cap)).scalar_one()
        total, capped = min(counted, cap), counted > cap
        if total <= query.offset:
            return Page(total=total, hits=[])
        scores = (
            connection.execute(scores_statement(conditions, query.limit, query.offset))
            .scalars()
            .all()
        )
        highest, lowest = scores[0], scores[-1]
        above = (
            connection.execute(
                count_statement([*conditions, pictures.c.top_score > highest])
            ).scalar_one()
            if query.offset
            else 0
        )
        window = connection.execute(window_statement(conditions, lowest, highest)).scalars().all()
        start = query.offset - above
        hits = _hits(connection, list(window[start : start + query.limit]))
    return Page(total=total, hits=hits, capped=capped)


def _provenance_json(row: Any) -> dict[str, Any]:
    return {
        "models": row.models,
        "weights": row.weights,
        "settings": row.settings,
        "labelled_at": as_utc(row.labelled_at).isoformat(),
    }


def labels_and_shares(
    connection: Connection, ids: list[int]
) -> tuple[dict[int, list[Any]], dict[int, dict[str, list[float]]]]:
    """The stored top-k rows (name, class_index, score; rank order) and the colour shares per
    palette (zeros where none is stored) of the pictures `ids` (one chunk: bound parameters)."""
    labels: dict[int, list[Any]] = {picture_id: [] for picture_id in ids}
    shares = {
        picture_id: {name: [0.0] * len(palette.hex_codes) for name, palette in PALETTES.items()}
        for picture_id in ids
    }
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
    for row in connection.execute(
        select(picture_colours).where(picture_colours.c.picture_id.in_(ids))
    ):
        shares[row.picture_id][row.palette][row.colour] = row.share
    return labels, shares


def _hits(connection: Connection, ids: list[int]) -> list[Hit]:
    """The hits for the pictures `ids`, in that order (looked up per chunk of ids)."""
    rows: dict[int, Any] = {}
    labels: dict[int, list[Any]] = {}
    shares: dict[int, dict[str, list[float]]] = {}
    places: dict[int, list[Any]] = {picture_id: [] for picture_id in ids}
    for chunk in chunks(ids):
        rows.update(
            (row.id, row)
            for row in connection.execute(
                select(
                    pictures, provenances.c.models, provenances.c.weights, provenances.c.settings
                )
                .join(provenances, pictures.c.provenance_id == provenances.c.id)
                .where(pictures.c.id.in_(chunk))
            )
        )
        chunk_labels, chunk_shares = labels_and_shares(connection, chunk)
        labels.update(chunk_labels)
        shares.update(chunk_shares)
        for row in connection.execute(
            select(files.c.picture_id, files.c.relative_path, libraries.c.name, libraries.c.root)
            .join(libraries, libraries.c.id == files.c.library_id)
            .where(files.c.picture_id.in_(chunk), files.c.missing_since.is_(None))
            .order_by(files.c.id)
        ):
            places[row.picture_id].append(row)
    hits = []
    for picture_id in ids:
        row = rows[picture_id]
        first, *others = places[picture_id]
        hits.append(
            Hit(
                path=shown_path(first.root, first.relative_path),
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
                library=first.name,
                relative_path=shown_relative(first.relative_path),
                local_path=local_path(first.root, first.relative_path),
                duplicates=[shown_path(other.root, other.relative_path) for other in others],
            )
        )
    return hits


def refusals(
    catalogue: Catalogue, limit: int | None = None, offset: int = 0
) -> tuple[int, list[Refusal]]:
    """The files whose content the server refused, with its reason, by path."""
    query = (
        select(
            libraries.c.root,
            files.c.relative_path,
            pictures.c.sha256,
            pictures.c.error,
            pictures.c.labelled_at,
            provenances.c.models,
            provenances.c.weights,
            provenances.c.settings,
        )
        .join(pictures, files.c.picture_id == pictures.c.id)
        .join(libraries, libraries.c.id == files.c.library_id)
        .join(provenances, pictures.c.provenance_id == provenances.c.id)
        .where(pictures.c.error.is_not(None), files.c.missing_since.is_(None))
        .order_by(libraries.c.root, files.c.relative_path)
    )
    with catalogue.engine.connect() as connection:
        total = connection.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = connection.execute(query.limit(limit).offset(offset)).all()
    return total, [
        Refusal(
            shown_path(row.root, row.relative_path), row.sha256, row.error, _provenance_json(row)
        )
        for row in rows
    ]


def missing_files(
    catalogue: Catalogue, limit: int | None = None, offset: int = 0
) -> tuple[int, list[MissingFile]]:
    """The files a run over their library no longer found, by path."""
    query = (
        select(
            libraries.c.name,
            libraries.c.root,
            files.c.relative_path,
            files.c.missing_since,
            pictures.c.sha256,
        )
        .join(pictures, files.c.picture_id == pictures.c.id)
        .join(libraries, libraries.c.id == files.c.library_id)
        .where(files.c.missing_since.is_not(None))
        .order_by(libraries.c.root, files.c.relative_path)
    )
    with catalogue.engine.connect() as connection:
        total = connection.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = connection.execute(query.limit(limit).offset(offset)).all()
    return total, [
        MissingFile(
            path=shown_path(row.root, row.relative_path),
            library=row.name,
            relative_path=shown_relative(row.relative_path),
            sha256=row.sha256,
            missing_since=as_utc(row.missing_since).isoformat(),
        )
        for row in rows
    ]
