"""The LitServe peer: perf/litserve/server.py (its own .venv-litserve, torch inside) in a few
CPU configurations, chosen by measuring them: LitServe's workers per device x torch threads,
with and without its dynamic batching. `compare` runs one configuration at a time, alternated
with tricolor (perf.peers). Setup: `make litserve-venv`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from tricolor.settings import PROJECT_ROOT, free_ports

from .. import peers
from ..summary import PeerComparison, PeerConfiguration

VENV = PROJECT_ROOT / ".venv-litserve"
SERVER_SCRIPT = Path(__file__).resolve().parent / "server.py"
BATCH_TIMEOUT_S = 0.005  # LitServe's batch_timeout when batching: a few ms, as its docs use


def configurations(cores: int = os.cpu_count() or 1) -> dict[str, PeerConfiguration]:
    found = [
        PeerConfiguration(f"{cores} x 1", workers=cores, threads=1, pinned=False),
        PeerConfiguration(f"1 x {cores}", workers=1, threads=cores, pinned=False),
        PeerConfiguration(
            f"1 x {cores} batch 4", workers=1, threads=cores, pinned=False, max_batch_size=4
        ),
    ]
    return {configuration.name: configuration for configuration in found}


def litserve_request() -> Callable[[bytes], tuple[str, bytes, dict]]:
    """LitServe's documented request: JSON with the image as base64 (encoded once per photo)."""

    def build(image: bytes) -> tuple[str, bytes, dict]:
        body = json.dumps({"image": base64.b64encode(image).decode()}).encode()
        return "/predict", body, {"Content-Type": "application/json"}

    return build


def wait_ready(port: int, process: subprocess.Popen, log: Path, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"litserve exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as reply:
                if reply.status == 200 and reply.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(1)  # between polls of a condition with a deadline
    raise RuntimeError(f"litserve was not ready in {timeout_s:.0f} s")


@contextlib.contextmanager
def litserve(configuration: PeerConfiguration, work: Path) -> Iterator[peers.Target]:
    """One LitServe with this configuration on a free loopback port, stopped on exit."""
    work.mkdir(parents=True, exist_ok=True)
    (port,) = free_ports(1)
    command = [
        str(VENV / "bin" / "python"), str(SERVER_SCRIPT), "--port", str(port),
        "--workers", str(configuration.workers), "--threads", str(configuration.threads or 1),
        "--max-batch-size", str(configuration.max_batch_size),
        "--batch-timeout", str(BATCH_TIMEOUT_S),
    ]  # fmt: skip
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    log_path = work / "litserve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_ready(port, process, log_path)
            cpus = [sorted(os.sched_getaffinity(process.pid))]
            yield peers.Target(port, litserve_request(), cpus)
        finally:
            peers.stop_group(process)


def compare(
    triton_http_port: int,
    chosen: list[PeerConfiguration],
    images: list[bytes],
    levels: list[int],
    seconds: float,
    rounds: int,
    work: Path,
) -> PeerComparison:
    """tricolor's `classify` and each LitServe configuration in turn (perf.peers)."""

    def start(configuration: PeerConfiguration) -> contextlib.AbstractContextManager:
        return litserve(configuration, work / configuration.name.replace(" ", ""))

    return peers.alternate(triton_http_port, chosen, start, images, levels, seconds, rounds)
