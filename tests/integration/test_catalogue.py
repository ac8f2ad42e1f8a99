"""The catalogue end to end: `tricolor label` and `tricolor search` as a user runs them, against
a real tritonserver and a real database (a SQLite file, and a PostgreSQL server)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from tests.helpers import ARTIFACTS, encode, photo_bytes, scrape, start_server
from tests.integration.postgres_server import fresh_database, postgres_server
from tricolor.catalogue.labeller import shard_of
from tricolor.catalogue.migrations import alembic_config
from tricolor.catalogue.store import files, metadata, normalise_url, open_catalogue, pictures
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


def solid(colour: str, size: tuple[int, int] = (96, 64)) -> bytes:
    return encode(Image.new("RGB", size, colour), "PNG")


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
    """Solid and striped images with known colours, real photos, a corrupt file, an empty
    file, a text file named .jpg, one photo under two names, a nested folder."""
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
    assert done.returncode == 1, done.stderr  # three files refused
    assert "11 images: 7 labelled" in done.stderr and "1 duplicates" in done.stderr
    assert "3 refused" in done.stderr
    # seven contents decoded once each (the copy is not sent), plus the provenance probe
    assert scrape(catalogue_server, "tricolor_decoded_images_total") == decoded + 7 + 1

    everything = search(db_url, "--limit", "100")
    assert paths_of(everything) == expected_order(answers, collection, lambda answer: True)
    by_path = {hit["path"]: hit for hit in everything}
    for relative, answer in answers.items():
        hit = by_path[collection.path(relative)]
        data = collection.labelled[relative]
        assert hit["sha256"] == hashlib.sha256(data).hexdigest()
        assert hit["size"] == len(data)
        with Image.open(collection.root / relative) as image:
            assert (hit["width"], hit["height"]) == image.size
        for key in ("labels", "class_ids", "color_rgb", "color_ryb"):
            assert hit[key] == getattr(answer, key), key
        for key in ("scores", "color_rgb_shares", "color_ryb_shares"):
            assert hit[key] == pytest.approx(getattr(answer, key), abs=1e-5), key
        assert hit["provenance"]["weights"] == answer.weights
    chelsea = by_path[collection.path(collection.copy[0])]
    assert chelsea["duplicates"] == [collection.path(collection.copy[1])]

    # ground truth of the generated images, then the search answers against the oracle
    assert answers["solid/red.png"].color_rgb == "#FF0000"
    assert answers["solid/red.png"].color_rgb_shares[0] == pytest.approx(1.0)
    assert 0.4 < answers["stripes/red_blue.png"].color_rgb_shares[0] < 0.6
    top = answers["photos/chelsea.png"].labels[0]
    queries = {
        ("--label", top): lambda a: a.labels[0] == top,
        ("--rgb", "red"): lambda a: a.color_rgb == "#FF0000",
        ("--rgb", "#ff0000"): lambda a: a.color_rgb == "#FF0000",
        ("--ryb", "yellow"): lambda a: a.color_ryb == RYB_PALETTE.hex_codes[4],
        ("--rgb", "red", "--min-share", "0.4"): lambda a: a.color_rgb_shares[0] >= 0.4,
        ("--label", top, "--rgb", "blue", "--min-share", "0.3"): (
            lambda a: a.labels[0] == top and a.color_rgb_shares[8] >= 0.3
        ),
        ("--label", top, "--ryb", "red"): (
            lambda a: a.labels[0] == top and a.color_ryb == RYB_PALETTE.hex_codes[0]
        ),
    }
    for query, keep in queries.items():
        expected = expected_order(answers, collection, keep)
        assert paths_of(search(db_url, *query, "--limit", "100")) == expected, query
    red_share = paths_of(search(db_url, "--rgb", "red", "--min-share", "0.4"))
    assert collection.path("solid/red.png") in red_share
    assert collection.path("stripes/red_blue.png") in red_share
    assert collection.path("solid/blue.png") not in red_share

    # --limit (default 9) and --offset page through the same order
    ordered = paths_of(everything)
    assert paths_of(search(db_url, "--limit", "2", "--offset", "1")) == ordered[1:3]
    table = run_tricolor("search", "--db", db_url, "--limit", "2", "--offset", "1")
    assert f"showing 2-3 of {len(ordered)} matches" in table.stdout

    # nothing matches: a colour no picture has as its dominant one
    unused = next(
        code for code in RGB_PALETTE.hex_codes if all(a.color_rgb != code for a in answers.values())
    )
    none = run_tricolor("search", "--db", db_url, "--rgb", unused)
    assert none.returncode == 0 and f"nothing matches dominant RGB {unused}" in none.stderr
    assert search(db_url, "--rgb", unused) == []

    unknown = run_tricolor("search", "--db", db_url, "--label", "no such class")
    assert unknown.returncode == 2
    assert "unknown label 'no such class'" in unknown.stderr and top in unknown.stderr
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


def test_a_second_run_skips_links_moves_and_retries_refusals(
    catalogue_server, db_url, tmp_path
) -> None:
    collection = make_collection(tmp_path / "collection")
    assert label(catalogue_server, db_url, collection.root).returncode == 1
    before = search(db_url, "--limit", "100")

    moved = collection.root / "moved" / "coffee_renamed.png"
    moved.parent.mkdir()
    shutil.move(collection.root / "photos" / "coffee.png", moved)
    (collection.root / "photos" / "third_chelsea.png").write_bytes(
        collection.labelled["photos/chelsea.png"]
    )
    decoded = scrape(catalogue_server, "tricolor_decoded_images_total")
    again = label(catalogue_server, db_url, collection.root)
    assert again.returncode == 1, again.stderr  # the refused files were retried and refused again
    assert "12 images: 0 labelled" in again.stderr
    assert "1 duplicates, 1 moved, 7 unchanged, 3 refused" in again.stderr
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
        assert connection.execute(select(func.count()).select_from(pictures)).scalar_one() == 10
        assert connection.execute(select(func.count()).select_from(files)).scalar_one() == 12


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
        assert (
            "4 images: 1 labelled" in kept.stderr
            and "3 kept from another provenance" in kept.stderr
        )
        counts = {len(hit["labels"]) for hit in search(db_url, "--limit", "100")}
        assert counts == {5, 3}  # the old rows kept, the new one from the new provenance
        stale = label(catalogue_server, db_url, collection.root, "--stale")
        assert stale.returncode == 1, stale.stderr
        assert ": 6 labelled" in stale.stderr  # 3 stale solids + 3 new photos; stripes current
        assert {len(hit["labels"]) for hit in search(db_url, "--limit", "100")} == {3}
    finally:
        reload_postprocess(catalogue_server, top_k="5")


def test_shards_split_a_collection_without_overlap(catalogue_server, db_url, tmp_path) -> None:
    collection = make_collection(tmp_path / "collection")
    for index in range(3):
        label(catalogue_server, db_url, collection.root, "--shard", f"{index}/3")
    everything = search(db_url, "--limit", "100")
    distinct = {hashlib.sha256(data).hexdigest() for data in collection.labelled.values()}
    assert {hit["sha256"] for hit in everything} == distinct
    shards = {
        relative: shard_of(relative, 3) for relative in [*collection.labelled, *collection.refused]
    }
    assert len(set(shards.values())) > 1  # the split is real on this collection
    assert len(search(db_url, "--errors")) == 3
    bad = run_tricolor("label", str(collection.root), "--db", db_url, "--shard", "3/3")
    assert bad.returncode == 2 and "I must be in 0..N-1" in bad.stderr


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
    except (OperationalError, ProgrammingError):  # the labeller has not made the tables yet
        return 0
    finally:
        engine.dispose()


def start_label(server: TritonServer, db_url: str, root: Path, log: Path) -> subprocess.Popen:
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
            select(files.c.path, pictures.c.sha256, pictures.c.error).join(
                pictures, files.c.picture_id == pictures.c.id
            )
        ).all()
        picture_count = connection.execute(select(func.count()).select_from(pictures)).scalar_one()
    expected = {
        str((root / rel).resolve()): hashlib.sha256(data).hexdigest()
        for rel, data in images.items()
    }
    assert {row.path: row.sha256 for row in rows} == expected and len(rows) == len(expected)
    assert picture_count == len(set(expected.values()))
    refused = sorted(Path(row.path).name for row in rows if row.error is not None)
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
    assert resumed.returncode == 1, resumed.stderr  # the two refused files
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
    with (ARTIFACTS / "tritonserver-catalogue-restarted.log").open("wb") as server_log:
        catalogue_server.start(stdout=server_log, stderr=subprocess.STDOUT)
    catalogue_server.wait_ready()
    code = process.wait(timeout=DEADLINE_S)
    output = log.read_text()
    assert code == 1, output  # the two refused files, nothing failed
    assert "failed" not in output
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


def test_search_names_a_missing_catalogue(tmp_path) -> None:
    missing = tmp_path / "none.db"
    done = run_tricolor("search", "--db", f"sqlite:///{missing}")
    assert done.returncode == 2 and f"no catalogue at {missing}" in done.stderr
    assert not missing.exists()
