"""A real PostgreSQL server for the tests: Debian's `postgresql` binaries, a cluster in a
temporary folder, trust authentication on a free loopback port, stopped at the end."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.helpers import stop_process
from tricolor.settings import free_ports

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
USER = "tricolor"


def _run_as() -> list[str]:
    """initdb refuses root: as root, run the server as `postgres` (the package's own user)."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"]
    pytest.fail("running as root, and neither a `postgres` nor a `nobody` user exists")


@contextmanager
def postgres_server(log: Path, timeout_s: float = 60.0) -> Iterator[str]:
    """Yields the server's URL, `postgresql://tricolor@127.0.0.1:PORT`."""
    if not (POSTGRES_BIN / "initdb").exists():
        pytest.fail(
            f"{POSTGRES_BIN}/initdb is missing: `apt-get install postgresql` (.ci/run does)"
        )
    run_as = _run_as()
    # not under pytest's 0700 temp root: the server's user must reach its folder
    folder = Path(tempfile.mkdtemp(prefix="tricolor-postgres-"))
    data = folder / "data"
    if run_as:
        shutil.chown(folder, user=run_as[2])
    initdb = [str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", USER, "--auth=trust"]
    subprocess.run([*run_as, *initdb, "-E", "UTF8"], check=True, capture_output=True)
    (port,) = free_ports(1)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [
        str(POSTGRES_BIN / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
        "-k",
        str(folder),
        "-c",
        "fsync=off",  # a throwaway cluster: durability is not under test
    ]
    with log.open("wb") as handle:
        process = subprocess.Popen([*run_as, *command], stdout=handle, stderr=subprocess.STDOUT)
    url = f"postgresql://{USER}@127.0.0.1:{port}"
    try:
        deadline, last_error = time.monotonic() + timeout_s, ""
        while True:
            if process.poll() is not None:
                pytest.fail(f"postgres exited with code {process.returncode}; see {log}")
            try:
                psycopg.connect(f"{url}/postgres", connect_timeout=2).close()
                break
            except psycopg.OperationalError as exc:
                last_error = str(exc)
            if time.monotonic() > deadline:
                pytest.fail(
                    f"postgres did not accept connections in {timeout_s:.0f} s: {last_error}"
                )
            time.sleep(0.2)
        yield url
    finally:
        stop_process(process)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server for one test; dropped afterwards."""
    name = f"catalogue_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server_url}/{name}"
    finally:
        with psycopg.connect(f"{server_url}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
