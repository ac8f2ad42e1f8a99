"""The catalogue end to end: `tricolor label` and `tricolor search` as a user runs them, against
a real tritonserver and a real database (a SQLite file, and a PostgreSQL server)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from tests.helpers import ARTIFACTS, encode, photo_bytes, scrape, start_server
from tests.integration.postgres_server import fresh_database, postgres_server
from tricolor.catalogue import transfer
from tricolor.catalogue.migrations import alembic_config
from tricolor.catalogue.schema import files, libraries, metadata, pictures
from tricolor.catalogue.store import normalise_url, open_catalogue
from tricolor.client import Classification, TricolorClient
from tricolor.colours import RGB_PALETTE, RYB_PALETTE
from tricolor.launcher import TritonServer

TRICOLOR = [sys.executable, "-m", "tricolor.cli"]
DEADLINE_S = 120

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def catalogue_server() -> Iterator[TritonServer]:
    """A server of this module's own: the tests reload its postprocess and restart it."""
    running = start_server("tritonserver-catalogue.log", model_control="explicit")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server(ARTIFACTS / "postgres.log") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'catalogue.db'}"
        return
    with fresh_database(request.getfixturevalue("postgres")) as url:
        yield url


def run_tricolor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TRICOLOR, *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S * 2,
        env={**os.environ, **env},
    )


def label(
    server: TritonServer, db_url: str, *paths: Path, **env: str
) -> subprocess.CompletedProcess:
    return run_tricolor("label", *map(str, paths), "--db", db_url, "--url", server.grpc_url, **env)


def search(db_url: str, *args: str) -> list[dict]:
    done = run_tricolor("search", *args, "--db", db_url, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


SUMMARY = re.compile(r"tricolor: (\d+) images?: (.*?) in [\d.]+ s")


def counts(stderr: str) -> dict[str, int]:
    """The summary line's counts, parsed: {"images": 11, "labelled": 7, "duplicate(s)": ...}
    with plural names made singular (`1 duplicate`, `2 duplicates` -> "duplicate")."""
    match = SUMMARY.search(stderr)
    assert match is not None, stderr
    parsed = {"images": int(match.group(1))}
    for part in match.group(2).split(", "):
        number, _, name = part.partition(" ")
        parsed[name.split(" (")[0].removesuffix("s")] = int(number)
    return parsed


def expect_counts(done: subprocess.CompletedProcess, **expected: int) -> None:
    found = counts(done.stderr)
    assert {name: found.get(name, 0) for name in expected} == expected, done.stderr


def shard_by_hand(relative: bytes, count: int) -> int:
    """The split as the CLI's help and the Job document it, written out here: the first 8
    bytes of the SHA-256 of the path relative to the library's root, big-endian, modulo N."""
    return int.from_bytes(hashlib.sha256(relative).digest()[:8], "big") % count


def solid(colour: str, size: tuple[int, int] = (96, 64)) -> bytes:
    return encode(Image.new("RGB", size, colour), "PNG")


def rotated_jpeg() -> bytes:
    """A JPEG stored 120 x 80 whose EXIF orientation (6: rotate 90) makes it 80 x 120 upright."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.new("RGB", (120, 80), "#00FF80"), "JPEG", exif=exif, quality=95)


def stripes(first: str, second: str, width: int = 16) -> bytes:
    """Vertical stripes, half each colour."""
    pixels = np.zeros((96, 96, 3), np.uint8)
    for column in range(0, 96, width):
        colour = first if (column // width) % 2 == 0 else second
        pixels[:, column : column + width] = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return encode(Image.fromarray(pixels), "PNG")


@dataclass
class Collection:
    root: Path
    labelled: dict[str, bytes]  # relative path -> content the server answers
    refused: dict[str, bytes]  # relative path -> content the server refuses
    copy: tuple[str, str]  # (first path, second path) of one content

    def path(self, relative: str) -> str:
        return str((self.root / relative).resolve())


def make_collection(root: Path) -> Collection:
    """Solid and striped images with known colours, real photos, an EXIF-rotated JPEG, a
    corrupt file, an empty file, a text file named .jpg, one photo under two names, a nested
    folder."""
    photos = photo_bytes()
    labelled = {
        "solid/red.png": solid("#FF0000"),
        "solid/blue.png": solid("#0000FF"),
        "solid/yellow.png": solid("#FFFF00"),
        "stripes/red_blue.png": stripes("#FF0000", "#0000FF"),
        "photos/chelsea.png": photos["chelsea.png"],
        "photos/coffee.png": photos["coffee.png"],
        "photos/nested/deeper/astronaut.png": photos["astronaut.png"],
        "photos/nested/chelsea_again.png": photos["chelsea.png"],
        "photos/rotated.jpg": rotated_jpeg(),
    }
    refused = {
        "broken.jpg": encode(Image.new("RGB", (300, 300), "#0080FF"), "JPEG")[:400],
        "empty.png": b"",
        "notes.jpg": b"this is a text file, named like a photo\n",
    }
    for relative, data in {**labelled, **refused}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    (root / "README.txt").write_text("not an image: not catalogued")
    return Collection(
        root, labelled, refused, ("photos/chelsea.png", "photos/nested/chelsea_again.png")
    )


def direct_answers(server: TritonServer, collection: Collection) -> dict[str, Classification]:
    """The oracle: each distinct labelled content classified on its own, straight to Triton."""
    with TricolorClient(server.grpc_url) as client:
        answers = {
            relative: client.classify_one(data, relative)
            for relative, data in collection.labelled.items()
            if relative != collection.copy[1]
        }
    assert all(answer.error is None for answer in answers.values())
    return answers


def expected_order(answers: dict[str, Classification], collection: Collection, keep) -> list[str]:
    chosen = [
        (answer.scores[0], collection.path(rel)) for rel, answer in answers.items() if keep(answer)
    ]
    return [path for _, path in sorted(chosen, key=lambda item: (-item[0], item[1]))]


def paths_of(hits: list[dict]) -> list[str]:
    return [hit["path"] for hit in hits]


def test_label_then_search_gives_exact_answers(catalogue_server, db_url, tmp_path) -> None:
    collection = make_collection(tmp_path / "collection")
    answers = direct_answers(catalogue_server, collection)
    decoded = scrape(catalogue_server, "tricolor_decoded_images_total")
    done = label(catalogue_server, db_url, collection.root)
    assert done.returncode == 5, done.stderr  # three files refused: stored, the run is done
    expect_counts(done, images=12, labelled=8, duplicate=1, refused=3, failed=0)
    # eight contents decoded once each (the copy is not sent), plus the provenance probe
    assert scrape(catalogue_server, "tricolor_decoded_images_total") == decoded + 8 + 1

    everything = search(db_url, "--limit", "100")
    assert paths_of(everything) == expected_order(answers, collection, lambda answer: True)
    by_path = {hit["path"]: hit for hit in everything}
    for relative, answer in answers.items():
        hit = by_path[collection.path(relative)]
        data = collection.labelled[relative]
        assert hit["sha256"] == hashlib.sha256(data).hexdigest()
        assert hit["size"] == len(data)
        assert (hit["library"], hit["relative_path"]) == (str(collection.root.resolve()), relative)
        if relative != "photos/rotated.jpg":
            with Image.open(collection.root / relative) as image:
                assert (hit["width"], hit["height"]) == image.size
        for key in ("labels", "class_ids", "color_rgb", "color_ryb"):
            assert hit[key] == getattr(answer, key), key
        for key in ("scores", "color_rgb_shares", "color_ryb_shares"):
            assert hit[key] == pytest.approx(getattr(answer, key), abs=1e-5), key
        assert hit["provenance"]["weights"] == answer.weights
    # catalogued with its upright size: stored 120 x 80, EXIF orientation 6
    assert (
        by_path[collection.path("photos/rotated.jpg")]["width"],
        by_path[collection.path("photos/rotated.jpg")]["height"],
    ) == (80, 120)
    chelsea = by_path[collection.path(collection.copy[0])]
    assert chelsea["duplicates"] == [collection.path(collection.copy[1])]

    # ground truth of the generated images, then the search answers against the oracle
    assert answers["solid/red.png"].color_rgb == "#FF0000"
    assert answers["solid/red.png"].color_rgb_shares[0] == pytest.approx(1.0)
    assert 0.4 < answers["stripes/red_blue.png"].color_rgb_shares[0] < 0.6
    # yellow is where the palettes differ: RGB index 2, RYB index 4, end to end
    yellow = by_path[collection.path("solid/yellow.png")]
    assert yellow["color_rgb_shares"][2] == pytest.approx(1.0)
    assert yellow["color_ryb_shares"][4] == pytest.approx(1.0)
    assert yellow["color_ryb"] == RYB_PALETTE.hex_codes[4] == "#FEFE33"
    top = answers["photos/chelsea.png"].labels[0]
    red_top = answers["solid/red.png"].labels[0]
    median_score = sorted(answer.scores[0] for answer in answers.values())[len(answers) // 2]
    queries = {
        ("--label", top): lambda a: a.labels[0] == top,
        ("--rgb", "red"): lambda a: a.color_rgb == "#FF0000",
        ("--rgb", "#ff0000"): lambda a: a.color_rgb == "#FF0000",
        ("--ryb", "yellow"): lambda a: a.color_ryb == RYB_PALETTE.hex_codes[4],
        ("--rgb", "red", "--min-share", "0.4"): lambda a: a.color_rgb_shares[0] >= 0.4,
        ("--ryb", "yellow", "--min-share", "0.9"): lambda a: a.color_ryb_shares[4] >= 0.9,
        ("--ryb", "#FEFE33", "--min-share", "0.5"): lambda a: a.color_ryb_shares[4] >= 0.5,
        ("--label", red_top, "--rgb", "red", "--min-share", "0.3"): (
            lambda a: a.labels[0] == red_top and a.color_rgb_shares[0] >= 0.3
        ),
        ("--label", red_top, "--ryb", "red"): (
            lambda a: a.labels[0] == red_top and a.color_ryb == RYB_PALETTE.hex_codes[0]
        ),
        ("--min-score", str(median_score)): lambda a: a.scores[0] >= median_score,
    }
    for query, keep in queries.items():
        expected = expected_order(answers, collection, keep)
        assert expected, f"{query} matches nothing in this collection: it proves nothing"
        assert paths_of(search(db_url, *query, "--limit", "100")) == expected, query
    assert (
        0 < len(search(db_url, "--min-score", str(median_score), "--limit", "100")) < len(answers)
    )
    red_share = paths_of(search(db_url, "--rgb", "red", "--min-share", "0.4"))
    assert collection.path("solid/red.png") in red_share
    assert collection.path("stripes/red_blue.png") in red_share
    assert collection.path("solid/blue.png") not in red_share
    ryb_yellow = paths_of(search(db_url, "--ryb", "yellow", "--min-share", "0.9"))
    assert collection.path("solid/yellow.png") in ryb_yellow
    assert search(db_url, "--rgb", "yellow", "--min-share", "0.9")[0]["path"] == (
        collection.path("solid/yellow.png")
    )

    # --limit (default 9) and --offset page through the same order
    ordered = paths_of(everything)
    assert paths_of(search(db_url, "--limit", "2", "--offset", "1")) == ordered[1:3]
    table = run_tricolor("search", "--db", db_url, "--limit", "2", "--offset", "1")
    assert f"showing 2-3 of {len(ordered)} matches" in table.stdout

    # the terminal table at 80 columns keeps every file name whole
    narrow = run_tricolor("search", "--db", db_url, "--limit", "100", COLUMNS="80")
    assert narrow.returncode == 0, narrow.stderr
    assert "…" not in narrow.stdout
    for path in ordered:
        assert Path(path).name in narrow.stdout, (path, narrow.stdout)

    # nothing matches: a colour no picture has as its dominant one
    unused = next(
        code for code in RGB_PALETTE.hex_codes if all(a.color_rgb != code for a in answers.values())
    )
    none = run_tricolor("search", "--db", db_url, "--rgb", unused)
    assert none.returncode == 0 and f"nothing matches dominant RGB {unused}" in none.stderr
    assert search(db_url, "--rgb", unused) == []

    # a label no catalogued picture has: a plain no-match that names the labels there are
    unknown = run_tricolor("search", "--db", db_url, "--label", "no such class")
    assert unknown.returncode == 0, unknown.stderr
    assert "nothing matches label 'no such class'" in unknown.stderr and top in unknown.stderr
    assert search(db_url, "--label", "no such class") == []
    off = run_tricolor("search", "--db", db_url, "--ryb", "#123456")
    assert (
        off.returncode == 2 and "#FE2712 red" in off.stderr and "#C21460 red-violet" in off.stderr
    )

    errors = search(db_url, "--errors")
    assert {error["path"]: error["error"] for error in errors} == {
        collection.path("broken.jpg"): errors[0]["error"],
        collection.path("empty.png"): "image is empty (0 bytes)",
        collection.path("notes.jpg"): "not a recognised image format",
    }
    assert errors[0]["error"].startswith("cannot decode image: ")
    listed = run_tricolor("search", "--db", db_url, "--errors")
    assert listed.stdout.splitlines()[-1] == "3 refused files"


def test_a_second_run_skips_links_moves_and_retries_refusals(
    catalogue_server, db_url, tmp_path
) -> None:
    collection = make_collection(tmp_path / "collection")
    assert label(catalogue_server, db_url, collection.root).returncode == 5
    before = search(db_url, "--limit", "100")

    moved = collection.root / "moved" / "coffee_renamed.png"
    moved.parent.mkdir()
    shutil.move(collection.root / "photos" / "coffee.png", moved)
    (collection.root / "photos" / "third_chelsea.png").write_bytes(
        collection.labelled["photos/chelsea.png"]
    )
    decoded = scrape(catalogue_server, "tricolor_decoded_images_total")
    again = label(catalogue_server, db_url, collection.root)
    assert again.returncode == 5, again.stderr  # the refused files were retried and refused again
    expect_counts(
        again, images=13, labelled=0, duplicate=1, moved=1, unchanged=8, refused=3, missing=0
    )
    assert scrape(catalogue_server, "tricolor_decoded_images_total") == decoded + 1  # the probe

    after = {hit["sha256"]: hit for hit in search(db_url, "--limit", "100")}
    assert len(after) == len(before)
    coffee = after[hashlib.sha256(collection.labelled["photos/coffee.png"]).hexdigest()]
    assert coffee["path"] == str(moved.resolve()) and coffee["duplicates"] == []
    chelsea = after[hashlib.sha256(collection.labelled["photos/chelsea.png"]).hexdigest()]
    assert sorted(chelsea["duplicates"]) == sorted(
        [collection.path(collection.copy[1]), collection.path("photos/third_chelsea.png")]
    )
    assert len(search(db_url, "--errors")) == 3  # once each, not once per run
    with open_catalogue(db_url) as catalogue, catalogue.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(pictures)).scalar_one() == 11
        assert connection.execute(select(func.count()).select_from(files)).scalar_one() == 13


def reload_postprocess(server: TritonServer, **parameters: str) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as control:
        config = control.get_model_config("postprocess", as_json=True)["config"]
        for key, value in parameters.items():
            config["parameters"][key] = {"string_value": value}
        control.load_model("postprocess", config=json.dumps(config))
        control.load_model("classify")


def test_provenance_is_the_servers_and_stale_relabels_only_other_provenance(
    catalogue_server, db_url, tmp_path
) -> None:
    collection = make_collection(tmp_path / "collection")
    assert label(catalogue_server, db_url, collection.root / "solid").returncode == 0
    with grpcclient.InferenceServerClient(catalogue_server.grpc_url) as raw:
        preprocess = raw.get_model_config("preprocess", as_json=True)["config"]["parameters"]
    (hit, *_) = search(db_url)
    provenance = hit["provenance"]
    assert provenance["models"] == {
        "classify": "1",
        "preprocess": "1",
        "resnet50": "1",
        "postprocess": "1",
    }
    served = provenance["settings"]["preprocess"]["parameters"]
    assert served == {key: value["string_value"] for key, value in preprocess.items()}
    assert len(hit["labels"]) == int(provenance["settings"]["postprocess"]["parameters"]["top_k"])

    reload_postprocess(catalogue_server, top_k="3")  # another provenance
    try:
        kept = label(
            catalogue_server, db_url, collection.root / "solid", collection.root / "stripes"
        )
        assert kept.returncode == 0, kept.stderr
        expect_counts(kept, images=4, labelled=1)
        assert "; 3 kept from another provenance" in kept.stderr
        counts = {len(hit["labels"]) for hit in search(db_url, "--limit", "100")}
        assert counts == {5, 3}  # the old rows kept, the new one from the new provenance
        stale = label(catalogue_server, db_url, collection.root, "--stale")
        assert stale.returncode == 5, stale.stderr
        # 3 stale solids + 4 new photos; the copy, and the stripes (current, labelled in their
        # own library above), are duplicates in this one
        expect_counts(stale, labelled=7, duplicate=2, unchanged=0, refused=3)
        assert {len(hit["labels"]) for hit in search(db_url, "--limit", "100")} == {3}
    finally:
        reload_postprocess(catalogue_server, top_k="5")


@pytest.fixture
def shard_urls(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Iterator[list[str]]:
    """Three more catalogues of the same kind as `db_url`, one per shard."""
    if db_url.startswith("sqlite"):
        yield [f"sqlite:///{tmp_path / f'shard{index}' / 'catalogue.db'}" for index in range(3)]
        return
    server = request.getfixturevalue("postgres")
    with fresh_database(server) as one, fresh_database(server) as two:
        with fresh_database(server) as three:
            yield [one, two, three]


def stored_paths(db_url: str) -> set[str]:
    with open_catalogue(db_url) as catalogue, catalogue.engine.connect() as connection:
        rows = connection.execute(
            select(libraries.c.root, files.c.relative_path).join(
                libraries, libraries.c.id == files.c.library_id
            )
        ).all()
    return {f"{row.root}/{os.fsdecode(row.relative_path)}" for row in rows}


def test_each_shard_labels_only_its_own_share(catalogue_server, shard_urls, tmp_path) -> None:
    collection = make_collection(tmp_path / "collection")
    relatives = [*collection.labelled, *collection.refused]
    share = {
        index: [rel for rel in relatives if shard_by_hand(rel.encode(), 3) == index]
        for index in range(3)
    }
    assert all(share.values()), share  # the split is real on this collection: no shard empty
    for index, url in enumerate(shard_urls):
        done = label(catalogue_server, url, collection.root, "--shard", f"{index}/3")
        refused = [rel for rel in share[index] if rel in collection.refused]
        assert done.returncode == (5 if refused else 0), done.stderr
        expect_counts(done, images=len(share[index]), refused=len(refused), failed=0)
        assert stored_paths(url) == {collection.path(rel) for rel in share[index]}
    bad = run_tricolor("label", str(collection.root), "--db", shard_urls[0], "--shard", "3/3")
    assert bad.returncode == 2 and "I must be in 0..N-1" in bad.stderr


@pytest.fixture
def postgres_url(postgres: str) -> Iterator[str]:
    with fresh_database(postgres) as url:
        yield url


def test_three_shards_label_one_postgresql_catalogue_at_once(
    catalogue_server, postgres_url, tmp_path
) -> None:
    """Copies of each content across the shards: each file stored once, each content once,
    and no run dies of a deadlock (their upserts of one picture meet)."""
    root = tmp_path / "many"
    images = many_images(root, count=24)
    for relative, data in list(images.items())[:24]:  # every content a second and third time
        for copy in ("copies_a", "copies_b"):
            images[f"{copy}/{relative}"] = data
            (root / copy / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / copy / relative).write_bytes(data)
    owners = {shard_by_hand(rel.encode(), 3) for rel in images}
    assert owners == {0, 1, 2}
    logs = [tmp_path / f"shard{index}.log" for index in range(3)]
    processes = [
        start_label(catalogue_server, postgres_url, root, log, "--shard", f"{index}/3")
        for index, log in enumerate(logs)
    ]
    codes = [process.wait(timeout=DEADLINE_S * 2) for process in processes]
    outputs = [log.read_text() for log in logs]
    for index, (code, output) in enumerate(zip(codes, outputs, strict=True)):
        refused = [
            rel for rel in images if "zz_" in rel and shard_by_hand(rel.encode(), 3) == index
        ]
        assert code == (5 if refused else 0), output
        assert "Traceback" not in output and "deadlock" not in output.lower(), output
    assert_complete(postgres_url, images, root)


# ---- interrupted runs ----


def many_images(root: Path, count: int = 40) -> dict[str, bytes]:
    """Distinct noisy photos-sized images (a run of a few seconds), two of them refused."""
    rng = np.random.default_rng(5)
    images = {}
    for index in range(count):
        pixels = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        images[f"batch{index % 3}/image_{index:03d}.jpg"] = encode(Image.fromarray(pixels), "JPEG")
    images["batch0/zz_broken.jpg"] = images["batch0/image_000.jpg"][:300]
    images["batch1/zz_empty.png"] = b""
    for relative, data in images.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return images


def count_rows(db_url: str, *conditions) -> int:
    """Pictures in the catalogue (matching `conditions`); 0 before the first run made it."""
    if db_url.startswith("sqlite") and not Path(db_url.removeprefix("sqlite:///")).exists():
        return 0
    engine = create_engine(normalise_url(db_url))  # no migration: only read what is there
    try:
        with engine.connect() as connection:
            query = select(func.count()).select_from(pictures).where(*conditions)
            return connection.execute(query).scalar_one()
    except (OperationalError, ProgrammingError) as exc:
        # the labeller has not made the tables yet; anything else (a locked database) fails
        if "no such table" in str(exc) or "UndefinedTable" in type(exc.orig).__name__:
            return 0
        raise
    finally:
        engine.dispose()


def start_label(
    server: TritonServer, db_url: str, root: Path, log: Path, *extra: str
) -> subprocess.Popen:
    with log.open("w") as handle:
        return subprocess.Popen(
            [
                *TRICOLOR,
                "label",
                str(root),
                "--db",
                db_url,
                "--url",
                server.grpc_url,
                "--concurrency",
                "2",
                "--batch-size",
                "2",
                *extra,
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def wait_for_pictures(db_url: str, process: subprocess.Popen, at_least: int, log: Path) -> int:
    deadline = time.monotonic() + DEADLINE_S
    while (stored := count_rows(db_url)) < at_least:
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{stored} pictures stored, exit {process.poll()}:\n{log.read_text()}")
        time.sleep(0.05)
    return stored


def assert_complete(db_url: str, images: dict[str, bytes], root: Path) -> None:
    """Every file once, every content once, the refused ones recorded once each."""
    with open_catalogue(db_url) as catalogue, catalogue.engine.connect() as connection:
        rows = connection.execute(
            select(libraries.c.root, files.c.relative_path, pictures.c.sha256, pictures.c.error)
            .join(pictures, files.c.picture_id == pictures.c.id)
            .join(libraries, libraries.c.id == files.c.library_id)
        ).all()
        picture_count = connection.execute(select(func.count()).select_from(pictures)).scalar_one()
    found = {f"{row.root}/{os.fsdecode(row.relative_path)}": row.sha256 for row in rows}
    expected = {
        str((root / rel).resolve()): hashlib.sha256(data).hexdigest()
        for rel, data in images.items()
    }
    assert found == expected and len(rows) == len(expected)
    assert picture_count == len(set(expected.values()))
    refused = sorted(Path(os.fsdecode(row.relative_path)).name for row in rows if row.error)
    assert refused == ["zz_broken.jpg", "zz_empty.png"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_an_interrupted_run_resumes_without_losing_or_repeating(
    catalogue_server, db_url, tmp_path, signum
) -> None:
    root = tmp_path / "many"
    images = many_images(root)
    log = tmp_path / "label.log"
    decoded = scrape(catalogue_server, "tricolor_decoded_images_total")
    process = start_label(catalogue_server, db_url, root, log)
    wait_for_pictures(db_url, process, 6, log)
    process.send_signal(signum)
    code = process.wait(timeout=DEADLINE_S)
    assert count_rows(db_url) < len(images) - 1, f"the run ended first:\n{log.read_text()}"
    answered = scrape(catalogue_server, "tricolor_decoded_images_total") - decoded - 1
    labelled_before = count_rows(db_url, pictures.c.error.is_(None))
    if signum == signal.SIGINT:
        assert code == 130, log.read_text()
        assert "interrupted with" in log.read_text()
        assert labelled_before == answered  # all the server answered is stored
    else:
        assert code == -signal.SIGKILL
    decoded = scrape(catalogue_server, "tricolor_decoded_images_total")
    resumed = label(catalogue_server, db_url, root)
    assert resumed.returncode == 5, resumed.stderr  # the two refused files
    # it resumed where it stopped: only what was not stored went to the server (+ the probe)
    distinct_good = len({data for relative, data in images.items() if "zz_" not in relative})
    to_send = distinct_good - labelled_before
    assert scrape(catalogue_server, "tricolor_decoded_images_total") == decoded + to_send + 1
    assert_complete(db_url, images, root)


def test_a_server_restart_mid_run_loses_nothing(catalogue_server, db_url, tmp_path) -> None:
    root = tmp_path / "many"
    images = many_images(root)
    log = tmp_path / "label.log"
    process = start_label(catalogue_server, db_url, root, log)
    wait_for_pictures(db_url, process, 6, log)
    catalogue_server.stop(drain=False)  # in-flight requests fail; the labeller waits
    # the labeller was mid-run when the server went: still running, and not all stored
    stored_while_down = count_rows(db_url)
    assert process.poll() is None, log.read_text()
    assert stored_while_down < len(images) - 1, log.read_text()
    with (ARTIFACTS / "tritonserver-catalogue-restarted.log").open("wb") as server_log:
        catalogue_server.start(stdout=server_log, stderr=subprocess.STDOUT)
    catalogue_server.wait_ready()
    code = process.wait(timeout=DEADLINE_S)
    output = log.read_text()
    assert code == 5, output  # the two refused files, nothing failed
    expect_counts(subprocess.CompletedProcess([], code, "", output), failed=0, refused=2)
    assert_complete(db_url, images, root)


def test_migrations_make_the_schema_the_store_uses(db_url) -> None:
    from alembic.autogenerate import compare_metadata  # noqa: PLC0415
    from alembic.migration import MigrationContext  # noqa: PLC0415
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    with open_catalogue(db_url) as catalogue, catalogue.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert compare_metadata(context, metadata) == []
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert context.get_current_revision() == head
        if connection.dialect.name == "sqlite":
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_the_searchable_flag_follows_refusals_missing_files_and_the_migration(db_url) -> None:
    """`pictures.searchable` (what search lists) as the writer, `mark_missing` and migration
    0004's backfill set it: answered with a live file, not refused, not only missing files."""
    from alembic import command  # noqa: PLC0415

    from tricolor.catalogue.migrations import upgrade  # noqa: PLC0415
    from tricolor.catalogue.store import Answer, FileSeen, PictureRecord, Provenance  # noqa: PLC0415

    provenance = Provenance({"classify": "1"}, "random", {})
    answer = Answer(["tench"], [0.5], [0], "#FF0000", "#FE2712", [1.0] + [0.0] * 11,
                    [1.0] + [0.0] * 11, False)  # fmt: skip
    gone = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def flags(catalogue) -> dict[str, bool]:
        with catalogue.engine.connect() as connection:
            rows = connection.execute(select(pictures.c.sha256, pictures.c.searchable))
            return {row.sha256[0]: bool(row.searchable) for row in rows}

    with open_catalogue(db_url) as catalogue:
        library = catalogue.library("lib", "/lib")
        catalogue.write(
            [
                PictureRecord(
                    "a" * 64,
                    1,
                    1,
                    1,
                    provenance,
                    answer=answer,
                    files=[FileSeen(library, b"a.png", 1, 1)],
                ),
                PictureRecord(
                    "b" * 64,
                    1,
                    1,
                    1,
                    provenance,
                    error="not an image",
                    files=[FileSeen(library, b"b.png", 1, 1)],
                ),
                PictureRecord(
                    "c" * 64,
                    1,
                    1,
                    1,
                    provenance,
                    answer=answer,
                    files=[FileSeen(library, b"c.png", 1, 1, missing_since=gone)],
                ),
                PictureRecord(
                    "d" * 64,
                    1,
                    1,
                    1,
                    provenance,
                    answer=answer,
                    files=[FileSeen(library, b"d.png", 1, 1), FileSeen(library, b"d2.png", 1, 1)],
                ),
            ]  # fmt: skip
        )
        expected = {"a": True, "b": False, "c": False, "d": True}
        assert flags(catalogue) == expected
        a_day_later = datetime.now(timezone.utc) + timedelta(days=1)  # every file seen before
        marked = catalogue.mark_missing(library, a_day_later, lambda path: path != b"d2.png")
        assert marked == 3 and flags(catalogue) == {**expected, "a": False}
        config = alembic_config()
        with catalogue.engine.begin() as connection:
            connection.execute(pictures.update().values(searchable=True))
            config.attributes["connection"] = connection
            command.downgrade(config, "0003")
        upgrade(catalogue.engine)
        assert flags(catalogue) == {**expected, "a": False}


def test_search_names_a_missing_catalogue(tmp_path) -> None:
    missing = tmp_path / "none.db"
    done = run_tricolor("search", "--db", f"sqlite:///{missing}")
    assert done.returncode == 2 and f"no catalogue at {missing}" in done.stderr
    assert not missing.exists()


# ---- a real photo library: odd names, moves, deletions, several hosts, crashes ----


def file_rows(db_url: str) -> list[tuple[str, bytes, str, bool]]:
    """(library, relative path bytes, sha256, missing) of every stored file."""
    with open_catalogue(db_url) as catalogue, catalogue.engine.connect() as connection:
        rows = connection.execute(
            select(
                libraries.c.name,
                files.c.relative_path,
                pictures.c.sha256,
                files.c.missing_since.is_not(None).label("missing"),
            )
            .join(libraries, libraries.c.id == files.c.library_id)
            .join(pictures, pictures.c.id == files.c.picture_id)
            .order_by(libraries.c.name, files.c.relative_path)
        ).all()
    return [(row.name, bytes(row.relative_path), row.sha256, bool(row.missing)) for row in rows]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_name_that_is_not_utf8_is_kept_as_bytes_and_shown_escaped(
    catalogue_server, db_url, tmp_path
) -> None:
    root = tmp_path / "nas"
    root.mkdir()
    name = b"caf\xe9.png"  # Latin-1, as old FAT drives and NAS shares write it
    data = solid("#FF0000")
    (root / "photos").mkdir()
    Path(os.fsdecode(os.fsencode(root / "photos") + b"/" + name)).write_bytes(data)
    (root / "photos" / "plain.png").write_bytes(solid("#0000FF"))
    done = label(catalogue_server, db_url, root)
    assert done.returncode == 0, done.stderr
    expect_counts(done, images=2, labelled=2)
    for index in range(3):  # the shard of a non-UTF-8 name is computed too
        sharded = label(catalogue_server, db_url, root, "--shard", f"{index}/3")
        assert sharded.returncode == 0, sharded.stderr
    library = str(root.resolve())
    assert (library, b"photos/" + name, sha(data), False) in file_rows(db_url)
    hit = next(hit for hit in search(db_url, "--rgb", "red") if hit["sha256"] == sha(data))
    assert hit["relative_path"] == "photos/caf\\xe9.png"
    assert hit["path"] == f"{library}/photos/caf\\xe9.png"
    table = run_tricolor("search", "--db", db_url, "--rgb", "red")
    assert "caf\\xe9.png" in table.stdout, table.stdout


def test_moves_deletions_renames_and_new_content(catalogue_server, db_url, tmp_path) -> None:
    collection = make_collection(tmp_path / "collection")
    root, photos = collection.root, collection.labelled
    assert label(catalogue_server, db_url, root).returncode == 5
    library = str(root.resolve())

    # a move onto a catalogued path: the next run, and every run after it, succeeds
    shutil.move(root / "photos" / "coffee.png", root / "solid" / "blue.png")
    for _ in range(2):
        again = label(catalogue_server, db_url, root)
        assert again.returncode == 5, again.stderr
    hits = {hit["sha256"]: hit for hit in search(db_url, "--limit", "100")}
    assert hits[sha(photos["photos/coffee.png"])]["path"] == collection.path("solid/blue.png")
    assert sha(photos["solid/blue.png"]) not in hits  # no file holds the old blue any more
    assert not any(row[1] == b"photos/coffee.png" for row in file_rows(db_url))

    # a deletion: marked missing, not listed; a live copy is shown instead of the deleted path
    (root / "photos" / "chelsea.png").unlink()
    (root / "solid" / "red.png").unlink()
    deleted = label(catalogue_server, db_url, root)
    assert deleted.returncode == 5, deleted.stderr
    expect_counts(deleted, missing=2, labelled=0)
    hits = {hit["sha256"]: hit for hit in search(db_url, "--limit", "100")}
    assert sha(photos["solid/red.png"]) not in hits
    chelsea = hits[sha(photos["photos/chelsea.png"])]
    assert chelsea["path"] == collection.path(collection.copy[1]) and chelsea["duplicates"] == []
    assert collection.path("solid/red.png") not in paths_of(search(db_url, "--rgb", "red"))
    missing = search(db_url, "--missing")
    assert sorted(entry["path"] for entry in missing) == sorted(
        [collection.path("photos/chelsea.png"), collection.path("solid/red.png")]
    )
    assert all(entry["library"] == library for entry in missing)
    # it comes back: no longer missing, listed again, nothing sent
    (root / "solid" / "red.png").write_bytes(photos["solid/red.png"])
    back = label(catalogue_server, db_url, root)
    assert back.returncode == 5 and [e["path"] for e in search(db_url, "--missing")] == [
        collection.path("photos/chelsea.png")
    ]
    expect_counts(back, labelled=0, moved=0, missing=0)
    assert collection.path("solid/red.png") in paths_of(search(db_url, "--rgb", "red"))

    # a folder holding duplicates renamed: every row follows, none left behind
    twins = root / "twins"
    twins.mkdir()
    for name in ("one.png", "two.png"):
        (twins / name).write_bytes(photos["solid/yellow.png"])
    assert label(catalogue_server, db_url, root).returncode == 5
    twins.rename(root / "renamed")
    renamed = label(catalogue_server, db_url, root)
    assert renamed.returncode == 5, renamed.stderr
    expect_counts(renamed, moved=2, missing=0, labelled=0)
    yellow_rows = [row for row in file_rows(db_url) if row[2] == sha(photos["solid/yellow.png"])]
    assert sorted(row[1] for row in yellow_rows) == [
        b"renamed/one.png",
        b"renamed/two.png",
        b"solid/yellow.png",
    ]
    assert not any(row[3] for row in yellow_rows)

    # new content at the same path is labelled again
    changed = solid("#00FFFF")
    (root / "solid" / "yellow.png").write_bytes(changed)
    relabelled = label(catalogue_server, db_url, root)
    assert relabelled.returncode == 5, relabelled.stderr
    expect_counts(relabelled, labelled=1)
    hit = next(hit for hit in search(db_url, "--limit", "100") if hit["sha256"] == sha(changed))
    assert hit["path"] == collection.path("solid/yellow.png") and hit["color_rgb"] == "#00FFFF"


def test_two_hosts_label_one_collection_under_one_library_name(
    catalogue_server, db_url, tmp_path
) -> None:
    first = make_collection(tmp_path / "host_a" / "photos").root
    second = tmp_path / "host_b" / "mnt" / "nas"
    shutil.copytree(first, second)  # the same files (contents, names, mtimes), another mount
    one = label(catalogue_server, db_url, first, "--library", "nas")
    assert one.returncode == 5, one.stderr
    before = file_rows(db_url)
    for root in (second, first, second):
        again = label(catalogue_server, db_url, root, "--library", "nas")
        assert again.returncode == 5, again.stderr
        expect_counts(again, labelled=0, moved=0, missing=0, unchanged=9, duplicate=0)
        assert file_rows(db_url) == before  # no row rewritten to this host's mount point
    assert {row[0] for row in before} == {"nas"}
    assert all(hit["path"].startswith(str(second.resolve())) for hit in search(db_url))
    twice = run_tricolor(
        "label", str(first), str(second), "--library", "nas", "--db", db_url, "--url", "x:1"
    )
    assert twice.returncode == 2 and "--library names one library" in twice.stderr


def test_a_path_inside_a_folder_named_beside_it_is_labelled_once(
    catalogue_server, tmp_path
) -> None:
    root = tmp_path / "photos"
    (root / "trip").mkdir(parents=True)
    (root / "red.png").write_bytes(solid("red"))
    (root / "trip" / "blue.png").write_bytes(solid("blue"))
    db_url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    done = label(catalogue_server, db_url, root, root / "red.png", root / "trip", root)
    assert done.returncode == 0, done.stderr
    expect_counts(done, images=2, labelled=2, duplicate=0)
    with open_catalogue(db_url) as catalogue, catalogue.engine.connect() as connection:
        assert connection.execute(select(libraries.c.name)).scalars().all() == [str(root.resolve())]


def test_a_file_vanishing_or_unreadable_mid_run_is_recorded_and_skipped(
    catalogue_server, db_url, tmp_path
) -> None:
    """The run's own pipeline: each file goes away right after the walk found it (the walker
    has just counted it and not yet handed it on), so before it is hashed."""
    from tricolor.catalogue.labeller import Labeller, Progress  # noqa: PLC0415

    root = tmp_path / "library"
    images = many_images(root, count=6)
    ordered = sorted(images)
    doomed, unreadable = root / ordered[-1], root / ordered[-2]

    class Saboteur(Progress):
        def total(self, count: int) -> None:
            if count == len(images) - 1:
                unreadable.unlink()
                unreadable.mkdir()  # a directory now: stat works, reading fails
            elif count == len(images):
                doomed.unlink()

    with open_catalogue(db_url) as catalogue, TricolorClient(catalogue_server.grpc_url) as client:
        summary = Labeller(catalogue, client, progress=Saboteur()).run([root])
    assert (summary.vanished, summary.unreadable, summary.failed) == (1, 1, 0)
    assert summary.labelled == len(images) - 2 - 2 and summary.refused == 2
    assert any(str(unreadable) in problem for problem in summary.problems)
    stored = {row[1] for row in file_rows(db_url)}
    assert stored == {rel.encode() for rel in ordered[:-2]}


def test_a_crash_exits_1_with_its_traceback(catalogue_server, db_url, tmp_path) -> None:
    root = tmp_path / "library"
    (root / "first").mkdir(parents=True)
    (root / "first" / "red.png").write_bytes(solid("#FF0000"))
    assert label(catalogue_server, db_url, root).returncode == 0
    # the database starts refusing new files: a failure no code path expects
    with open_catalogue(db_url) as catalogue, catalogue.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.execute(
                text(
                    "CREATE TRIGGER boom BEFORE INSERT ON files "
                    "BEGIN SELECT RAISE(ABORT, 'boom: no new files'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'boom: no new files'; END $$"
                )
            )
            connection.execute(
                text("CREATE TRIGGER boom BEFORE INSERT ON files EXECUTE FUNCTION boom()")
            )
    (root / "second.png").write_bytes(solid("#0000FF"))
    crashed = label(catalogue_server, db_url, root)
    assert crashed.returncode == 1, crashed.stderr
    assert "Traceback (most recent call last)" in crashed.stderr
    assert "boom: no new files" in crashed.stderr


def test_a_large_limit_is_answered(db_url) -> None:
    """More hits than SQLite's 32766 bound parameters in one statement."""
    from tricolor.catalogue.store import Answer, FileSeen, PictureRecord, Provenance  # noqa: PLC0415

    count = 33_000
    provenance = Provenance({"classify": "1"}, "random", {})
    answer = Answer(["tench"], [0.5], [0], "#FF0000", "#FE2712", [1.0] + [0.0] * 11,
                    [1.0] + [0.0] * 11, False)  # fmt: skip
    with open_catalogue(db_url) as catalogue:
        library = catalogue.library("big", "/big")
        for start in range(0, count, 3000):
            catalogue.write(
                [
                    PictureRecord(
                        f"{index:064x}",
                        1,
                        1,
                        1,
                        provenance,
                        answer=Answer(**{**answer.__dict__, "scores": [index / count]}),
                        files=[FileSeen(library, f"{index}.png".encode(), 1, 1)],
                    )  # fmt: skip
                    for index in range(start, min(start + 3000, count))
                ]
            )
    hits = search(db_url, "--limit", "40000")
    assert len(hits) == count
    assert hits[0]["path"] == f"/big/{count - 1}.png" and hits[-1]["path"] == "/big/0.png"
    # the total is counted up to the thousand past the page: exact near the end
    done = run_tricolor("search", "--db", db_url)
    assert done.returncode == 0, done.stderr
    assert "showing 1-9 of more than 1,000 matches" in done.stdout
    assert "--offset 9 for more" in done.stdout
    done = run_tricolor("search", "--db", db_url, "--offset", "32995")
    assert "showing 32996-33000 of 33,000 matches" in done.stdout, done.stdout
    assert "for more" not in done.stdout


def test_only_the_two_dialects_open_and_search_creates_nothing(postgres, tmp_path) -> None:
    mysql = run_tricolor("label", str(tmp_path), "--db", "mysql://user@127.0.0.1/catalogue")
    assert mysql.returncode == 2 and "mysql is not supported" in mysql.stderr
    assert "Traceback" not in mysql.stderr
    with fresh_database(postgres) as empty:
        done = run_tricolor("search", "--db", empty)
        assert done.returncode == 2 and "holds no catalogue" in done.stderr, done.stderr
        engine = create_engine(normalise_url(empty))
        with engine.connect() as connection:
            tables = connection.execute(
                text("SELECT count(*) FROM information_schema.tables WHERE table_schema='public'")
            ).scalar_one()
        engine.dispose()
        assert tables == 0


def test_a_read_only_sqlite_catalogue_can_be_searched(catalogue_server, tmp_path) -> None:
    db_url = f"sqlite:///{tmp_path / 'state' / 'catalogue.db'}"
    root = tmp_path / "library"
    root.mkdir()
    (root / "red.png").write_bytes(solid("#FF0000"))
    assert label(catalogue_server, db_url, root).returncode == 0
    database = tmp_path / "state" / "catalogue.db"
    locked = subprocess.run(["chattr", "+i", str(database)], capture_output=True, text=True)
    if locked.returncode != 0:
        pytest.skip(f"cannot make a file read-only for root here: {locked.stderr.strip()}")
    try:
        assert not os.access(database, os.W_OK)
        (hit,) = search(db_url)
        assert hit["path"] == str((root / "red.png").resolve())
    finally:
        subprocess.run(["chattr", "-i", str(database)], check=True)


def test_ids_from_a_rolled_back_transaction_are_not_kept(db_url) -> None:
    """The long-lived catalogue (the UI's) must not file answers under a class whose row a
    failed transaction took back with it."""
    from tricolor.catalogue.store import Answer, FileSeen, PictureRecord, Provenance  # noqa: PLC0415

    provenance = Provenance({"classify": "1"}, "random", {})

    def record(index: int, class_id: int, name: str) -> PictureRecord:
        answer = Answer([name], [0.9], [class_id], "#FF0000", "#FE2712", [1.0] + [0.0] * 11,
                        [1.0] + [0.0] * 11, False)  # fmt: skip
        return PictureRecord(f"{index:064x}", 1, 1, 1, provenance, answer=answer,
                             files=[FileSeen(library, f"{index}.png".encode(), 1, 1)])  # fmt: skip

    with open_catalogue(db_url) as catalogue:
        library = catalogue.library("lib", "/lib")
        with catalogue.engine.begin() as connection:  # the next picture insert fails
            if connection.dialect.name == "sqlite":
                connection.execute(
                    text(
                        "CREATE TRIGGER boom BEFORE INSERT ON pictures "
                        "BEGIN SELECT RAISE(ABORT, 'boom'); END"
                    )
                )
            else:
                connection.execute(
                    text(
                        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS "
                        "$$ BEGIN RAISE EXCEPTION 'boom'; END $$"
                    )
                )
                connection.execute(
                    text("CREATE TRIGGER boom BEFORE INSERT ON pictures EXECUTE FUNCTION boom()")
                )
        with pytest.raises(Exception, match="boom"):
            catalogue.write([record(1, 7, "seven")])
        with catalogue.engine.begin() as connection:
            connection.execute(
                text(
                    "DROP TRIGGER boom"
                    + (" ON pictures" if connection.dialect.name == "postgresql" else "")
                )
            )
        catalogue.write([record(2, 8, "eight")])  # may take the id "seven" had
        catalogue.write([record(1, 7, "seven")])
    labels = {hit["sha256"][-1]: hit["labels"] for hit in search(db_url)}
    assert labels == {"1": ["seven"], "2": ["eight"]}


def plan_of(connection, statement) -> str:
    """The database's plan for `statement` (SQLite's EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN)
    as text, one step a line."""
    compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    params = compiled.construct_params()  # what stays bound (SQLite's LIMIT -1 before an OFFSET)
    if compiled.positional:
        params = tuple(params[name] for name in compiled.positiontup)
    if connection.dialect.name == "sqlite":
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params or ())
        return "\n".join(row[-1] for row in plan)
    plan = connection.exec_driver_sql(f"EXPLAIN {compiled}", *([params] if params else []))
    return "\n".join(row[0] for row in plan)


@pytest.mark.parametrize("shares", ["few", "many"])
def test_search_is_served_by_indexes_not_a_scan_of_files(db_url, shares, monkeypatch) -> None:
    """The page's scores and the count come from an index led by `pictures.searchable` and
    never read `files`; the page's paths come through `ix_files_live`: no statement of a search
    reads `files` in full, and only the count (capped: it stops at `COUNT_STEP` past the page)
    may walk `pictures` itself. A share filter is planned both ways (few matching shares: their
    ids; many: a probe per picture, the count along the share index).
    PostgreSQL is asked with sequential scans off: a plan that still scans has no index."""
    from tricolor.catalogue import search as search_module  # noqa: PLC0415
    from tricolor.catalogue.search import (  # noqa: PLC0415
        Query,
        _filters,
        scores_statement,
        window_statement,
    )

    if shares == "many":
        monkeypatch.setattr(search_module, "FEW_SHARES", 0)
    from tricolor.catalogue.store import Answer, FileSeen, PictureRecord, Provenance  # noqa: PLC0415

    queries = {
        "--label": Query(label="tench"),
        "--rgb --min-share": Query(rgb="red", min_share=0.2),
        "--label --ryb": Query(label="tench", ryb="#FE2712"),
        "--offset": Query(offset=5000),
    }
    with open_catalogue(db_url) as catalogue, catalogue.engine.connect() as connection:
        library = catalogue.library("few", "/few")
        catalogue.write(
            [
                PictureRecord(
                    f"{index:064x}",
                    1,
                    1,
                    1,
                    Provenance({"classify": "1"}, "random", {}),
                    answer=Answer(
                        ["tench"],
                        [index / 8],
                        [0],
                        "#FF0000",
                        "#FE2712",
                        [1.0] + [0.0] * 11,
                        [1.0] + [0.0] * 11,
                        False,
                    ),
                    files=[FileSeen(library, f"{index}.png".encode(), 1, 1)],
                )  # fmt: skip
                for index in range(1, 4)
            ]
        )
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")
        for name, query in queries.items():
            filters = _filters(connection, query)
            conditions = filters.conditions
            statements = {
                "count": filters.count(cap=1000),
                "scores": scores_statement(conditions, query.limit, query.offset),
                "window": window_statement(conditions, 0.1, 0.2),
            }
            for part, statement in statements.items():
                plan = plan_of(connection, statement)
                tables = "files|shown|picture_colours" + ("" if part == "count" else "|pictures")
                if connection.dialect.name == "sqlite":
                    full = re.compile(rf"\s*SCAN ({tables})\b(?! USING)")
                    assert not any(map(full.match, plan.splitlines())), f"{name} {part}: {plan}"
                else:
                    scans = re.findall(rf"Seq Scan on ({tables})\b", plan)
                    assert not scans, f"{name} {part}: {plan}"
                led_by = ["ix_pictures_searchable_"] + (
                    ["ix_picture_colours_"] if query.min_share else []
                )
                assert any(index in plan for index in led_by), f"{name} {part}: {plan}"
                if part == "window":  # the page's paths: each picture's first live file
                    assert "ix_files_live" in plan, f"{name} {part}: {plan}"
                else:  # the count and the page's scores do not read `files` at all
                    assert not re.search(r"(SEARCH|SCAN|on) files\b", plan), (
                        f"{name} {part}: {plan}"
                    )


def test_a_share_filter_answers_alike_from_the_share_index_and_from_probes(
    db_url, monkeypatch
) -> None:
    """A share filter matching few pictures is looked up in the share index; many, probed per
    picture, the count walking the share index instead: the same pages and totals either way
    (capped or not, with a second palette, a label or a score bound beside it), and pictures
    whose only file is missing are in neither (2 in 100 files of this catalogue are)."""
    from perf.catalogue_bench import synthetic_catalogue  # noqa: PLC0415
    from tricolor.catalogue import search as search_module  # noqa: PLC0415
    from tricolor.catalogue.search import Query, search  # noqa: PLC0415

    synthetic_catalogue(db_url, 3000)
    queries = [
        Query(rgb="red", min_share=0.2, limit=50),
        Query(rgb="red", min_share=0.2, limit=50, offset=120),
        Query(ryb="blue", min_share=0.5, limit=20, offset=40),
        Query(rgb="yellow", ryb="red", min_share=0.1, limit=30),
        Query(label="class7", rgb="green", min_share=0.05),
        Query(min_score=0.5, rgb="red", min_share=0.2, limit=40, offset=10),
    ]
    few_shares = search_module.FEW_SHARES
    for step in (search_module.COUNT_STEP, 100):  # exact totals, then capped ones
        monkeypatch.setattr(search_module, "COUNT_STEP", step)
        with open_catalogue(db_url, create=False) as catalogue:
            answers = {}
            for few in (few_shares, 0):
                monkeypatch.setattr(search_module, "FEW_SHARES", few)
                answers[few] = [search(catalogue, query) for query in queries]
        looked_up, probed = answers.values()
        for query, first, second in zip(queries, looked_up, probed, strict=True):
            assert first.hits, f"{query} matches nothing here: it proves nothing"
            assert (second.total, second.capped) == (first.total, first.capped), (step, query)
            assert [hit.sha256 for hit in second.hits] == [hit.sha256 for hit in first.hits]
        assert any(page.capped for page in looked_up) == (step == 100)


def catalogue_views(db_url: str) -> dict[str, object]:
    """What a user sees of a catalogue: searches of every kind, refusals, missing files, and
    every stored file row (raw bytes of the relative path included)."""
    return {
        "everything": search(db_url, "--limit", "100"),
        "label": search(db_url, "--label", search(db_url)[0]["labels"][0]),
        "share": search(db_url, "--rgb", "red", "--min-share", "0.2"),
        "offset": search(db_url, "--offset", "2"),
        "errors": search(db_url, "--errors"),
        "missing": search(db_url, "--missing"),
        "files": file_rows(db_url),
    }


def test_export_then_import_moves_a_sqlite_catalogue_into_postgresql(
    catalogue_server, postgres, tmp_path, monkeypatch
) -> None:
    collection = make_collection(tmp_path / "photos")
    odd = os.fsencode(collection.root) + b"/solid/caf\xe9.png"  # not UTF-8: kept as bytes
    Path(os.fsdecode(odd)).write_bytes(solid("#00FF00"))
    source = f"sqlite:///{tmp_path / 'state' / 'catalogue.db'}"
    assert label(catalogue_server, source, collection.root).returncode == 5
    (collection.root / "solid" / "blue.png").unlink()  # marked missing by the next run
    assert label(catalogue_server, source, collection.root).returncode == 5
    views = catalogue_views(source)
    assert views["missing"] and views["errors"]
    assert any(b"\xe9" in row[1] for row in views["files"])

    exported = tmp_path / "catalogue.jsonl"
    done = run_tricolor("export", "--db", source, "--output", str(exported))
    assert done.returncode == 0, done.stderr
    lines = exported.read_text(encoding="utf-8").splitlines()
    with open_catalogue(source) as catalogue, catalogue.engine.connect() as connection:
        assert len(lines) == connection.execute(select(func.count()).select_from(pictures)).scalar()
    assert run_tricolor("export", "--db", source).stdout.splitlines() == lines  # stdout alike

    with fresh_database(postgres) as target:
        for _ in range(2):  # importing twice is importing once
            done = run_tricolor("import", str(exported), "--db", target)
            assert done.returncode == 0, done.stderr
            assert catalogue_views(target) == views
        assert "0 pictures" in done.stderr and f"({len(lines)} stored already" in done.stderr
        again = tmp_path / "again.jsonl"
        assert run_tricolor("export", "--db", target, "--output", str(again)).returncode == 0
        # provenance (and when labelled, seen, missing) kept; pictures in the target's id order
        assert sorted(again.read_text(encoding="utf-8").splitlines()) == sorted(lines)

        # a bad line is named by its number, and nothing of the file is imported
        fresh = json.loads(lines[0])
        fresh["sha256"] = "f" * 64
        broken = json.loads(lines[1])
        del broken["answer"], broken["error"]
        bad = tmp_path / "bad.jsonl"
        bad.write_text("\n".join([json.dumps(fresh), lines[1], json.dumps(broken)]) + "\n")
        done = run_tricolor("import", str(bad), "--db", target)
        assert done.returncode == 2, done.stderr
        assert f"{bad}: line 3: " in done.stderr and "either an answer or an error" in done.stderr
        assert catalogue_views(target) == views
        monkeypatch.setattr(transfer, "BATCH", 1)  # line 1 would be written before line 3 is read
        with open_catalogue(target) as catalogue, pytest.raises(transfer.BadLine, match="line 3"):
            transfer.import_files(catalogue, [bad])
        assert catalogue_views(target) == views
        bad.write_text(lines[0] + "\n{not json\n")
        done = run_tricolor("import", str(bad), "--db", target)
        assert done.returncode == 2 and f"{bad}: line 2: not JSON" in done.stderr, done.stderr
        assert catalogue_views(target) == views
