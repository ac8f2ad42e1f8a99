"""`tricolor search` on large synthetic catalogues: p50 / p95 per kind of query, in-process
(`search()`) and as the CLI (`tricolor search --json`, a fresh process each time), on SQLite
and on PostgreSQL. Results go to perf/CATALOGUE.md by hand, with the load average printed
beside every number.

    .venv/bin/python -m perf.catalogue_bench --sizes 10000 100000 [--databases sqlite postgresql]
    .venv/bin/python -m perf.catalogue_bench --sizes 1000000 --rounds 50 --cli-rounds 10

The catalogue is written in bulk (executemany of 20,000 rows, straight into the tables the
migrations made, not through `Catalogue.write` one batch of pictures at a time): N pictures
with five labels each (the top-1 drawn from the 1,000 ImageNet classes), three non-zero shares
per palette, a uniform top-1 score, and about 1.3 files each (three in ten pictures have a
second file, one in fifty of all files is missing). PostgreSQL is a throwaway server started
like the tests' own (Debian's postgresql), VACUUM ANALYZEd after loading as autovacuum would;
SQLite is left as `tricolor label` leaves it (no ANALYZE).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import insert, text
from sqlalchemy.engine import Connection

from tricolor.catalogue.search import Query, search
from tricolor.catalogue.store import (
    Provenance,
    classes,
    files,
    libraries,
    open_catalogue,
    picture_colours,
    picture_labels,
    pictures,
    provenances,
)
from tricolor.colours import RGB_PALETTE, RYB_PALETTE

from .common import load_average

CLASSES = 1000
ROWS = 20_000  # rows per executemany
DEEP_OFFSET = 5000
SYNTHETIC = Provenance({"classify": "1"}, "synthetic", {})


def synthetic_catalogue(
    url: str, count: int, seed: int = 0, provenance: Provenance = SYNTHETIC
) -> None:
    """Write `count` pictures (and their labels, shares, files) into the empty catalogue, all
    from `provenance` (a server's own, for a rescan that finds them current). Every file has
    size 1 and mtime 1 ns, under library "bench"."""
    with open_catalogue(url) as catalogue:
        with catalogue.engine.begin() as connection:
            _write_synthetic(connection, count, random.Random(seed), provenance)
        if catalogue.engine.dialect.name == "postgresql":
            # as autovacuum leaves inserted tables (PostgreSQL >= 13 vacuums them too):
            # analysed, and the visibility map set, without which no index-only scan is chosen
            with catalogue.engine.connect() as vacuum:
                vacuum.execution_options(isolation_level="AUTOCOMMIT")
                vacuum.execute(text("VACUUM ANALYZE"))


def _write_synthetic(
    connection: Connection, count: int, rng: random.Random, provenance: Provenance
) -> None:
    stamp = datetime(2026, 12, 7, tzinfo=timezone.utc)
    connection.execute(insert(classes), [{"id": i + 1, "class_index": i, "name": f"class{i}"}
                                         for i in range(CLASSES)])  # fmt: skip
    connection.execute(
        insert(provenances).values(
            id=1,
            fingerprint=provenance.fingerprint,
            models=provenance.models,
            weights=provenance.weights,
            settings=provenance.settings,
            first_seen=stamp,
        )
    )
    connection.execute(insert(libraries).values(id=1, name="bench", root="/bench"))
    file_id = 0
    for start in range(0, count, ROWS):
        rows, labels, shares, placed = [], [], [], []
        for picture_id in range(start + 1, min(start + ROWS, count) + 1):
            top = rng.randrange(CLASSES)
            score = rng.random()
            rgb = rng.sample(range(len(RGB_PALETTE.hex_codes)), 3)
            ryb = rng.sample(range(len(RYB_PALETTE.hex_codes)), 3)
            rows.append(
                {
                    "id": picture_id,
                    "sha256": f"{picture_id:064x}",
                    "size": 1,
                    "width": 1,
                    "height": 1,
                    "provenance_id": 1,
                    "labelled_at": stamp,
                    "top_class_id": top + 1,
                    "top_score": score,
                    "color_rgb": RGB_PALETTE.hex_codes[rgb[0]],
                    "color_ryb": RYB_PALETTE.hex_codes[ryb[0]],
                    "second_look": False,
                }
            )
            others = rng.sample(range(CLASSES), 5)
            others = [top] + [c for c in others if c != top][:4]
            labels.extend(
                {"picture_id": picture_id, "rank": rank, "class_id": c + 1, "score": score}
                for rank, c in enumerate(others)
            )
            for palette, chosen in (("rgb", rgb), ("ryb", ryb)):
                first = rng.uniform(0.34, 1.0)
                second = rng.uniform(0, 1 - first)
                for colour, share in zip(chosen, (first, second, 1 - first - second), strict=True):
                    shares.append({"picture_id": picture_id, "palette": palette,
                                   "colour": colour, "share": share})  # fmt: skip
            copies = 2 if rng.random() < 0.3 else 1
            for copy in range(copies):
                file_id += 1
                placed.append(
                    {
                        "id": file_id,
                        "library_id": 1,
                        "relative_path": f"{picture_id % 997}/{picture_id}-{copy}.jpg".encode(),
                        "picture_id": picture_id,
                        "size": 1,
                        "mtime_ns": 1,
                        "seen_at": stamp,
                        "missing_since": stamp if rng.random() < 0.02 else None,
                    }
                )
            rows[-1]["searchable"] = any(  # as the store's writer keeps it
                file["missing_since"] is None for file in placed[-copies:]
            )
        for table, batch in ((pictures, rows), (picture_labels, labels),
                             (picture_colours, shares), (files, placed)):  # fmt: skip
            for offset in range(0, len(batch), ROWS):
                connection.execute(insert(table), batch[offset : offset + ROWS])


def queries(rng: random.Random) -> dict[str, Query]:
    """One query of each kind, with its label and colours drawn anew."""
    label = f"class{rng.randrange(CLASSES)}"
    rgb = rng.choice(RGB_PALETTE.names)
    ryb = rng.choice(RYB_PALETTE.names)
    return {
        "--label": Query(label=label),
        "--rgb --min-share 0.2": Query(rgb=rgb, min_share=0.2),
        "--label --ryb": Query(label=label, ryb=ryb),
        f"--offset {DEEP_OFFSET}": Query(offset=DEEP_OFFSET),
    }


def cli_args(query: Query) -> list[str]:
    args = []
    for flag, value in (("--label", query.label), ("--rgb", query.rgb), ("--ryb", query.ryb),
                        ("--min-share", query.min_share)):  # fmt: skip
        if value is not None:
            args += [flag, str(value)]
    return args + ["--offset", str(query.offset)] if query.offset else args


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1e3, 1), "p95_ms": round(p95 * 1e3, 1)}


def measure(url: str, rounds: int, cli_rounds: int, seed: int = 1) -> dict[str, dict]:
    rng = random.Random(seed)
    timings: dict[str, dict[str, list[float]]] = {}
    with open_catalogue(url, create=False) as catalogue:
        search(catalogue, Query())  # connect, warm the cache
        for round_ in range(rounds):
            for name, query in queries(rng).items():
                started = time.perf_counter()
                search(catalogue, query)
                timings.setdefault(name, {"in": [], "cli": []})["in"].append(
                    time.perf_counter() - started
                )
                if round_ < cli_rounds:
                    command = [sys.executable, "-m", "tricolor.cli", "search", *cli_args(query)]
                    started = time.perf_counter()
                    subprocess.run([*command, "--db", url, "--json"], check=True,
                                   capture_output=True, timeout=600)  # fmt: skip
                    timings[name]["cli"].append(time.perf_counter() - started)
    return {
        name: {
            "in_process": percentiles(kinds["in"]),
            "cli": percentiles(kinds["cli"]) if kinds["cli"] else None,
            "load_average": load_average(),
        }
        for name, kinds in timings.items()
    }


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    from tests.integration.postgres_server import fresh_database, postgres_server  # noqa: PLC0415

    with postgres_server(folder / "postgres.log") as server, fresh_database(server) as url:
        yield url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql"])  # fmt: skip
    parser.add_argument("--rounds", type=int, default=20, help="in-process queries per kind")
    parser.add_argument("--cli-rounds", type=int, default=5, help="CLI runs per kind")
    args = parser.parse_args()
    results = []
    for kind in args.databases:
        for size in args.sizes:
            with tempfile.TemporaryDirectory() as scratch, database(kind, Path(scratch)) as url:
                started = time.perf_counter()
                synthetic_catalogue(url, size)
                written = time.perf_counter() - started
                print(f"{kind} {size}: written in {written:.0f} s (load {load_average()})",
                      file=sys.stderr)  # fmt: skip
                results.append({"database": kind, "pictures": size, "write_s": round(written),
                                "queries": measure(url, args.rounds, args.cli_rounds)})  # fmt: skip
                print(json.dumps(results[-1]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
