"""The peers' comparison loop, shared by TorchServe and LitServe: tricolor's `classify` and one
peer configuration at a time (never two peers at once, never one loaded beside tricolor),
alternating round by round with the same closed loop (perf.closed_loop), so that this VM's slow
minutes fall on both alike. tricolor's repeats are pooled over every configuration's turn.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from . import closed_loop
from .quiet import Window
from .summary import PeerComparison, PeerConfiguration, PeerRows

# load on every target before the rounds, not counted: TorchScript's profiling executor
# optimises the graph on a worker's first calls (seconds each), and Triton's stubs warm up too
WARM_UP_S = 8.0


@dataclass
class Target:
    """A running peer configuration: where it listens and how a request to it looks."""

    port: int
    build: Callable[[bytes], tuple[str, bytes, dict]]
    worker_cpus: list[list[int]]  # each worker's CPU affinity, as it ran


def stop_group(process: subprocess.Popen, grace_s: float = 30) -> None:
    """Stop a peer started with `start_new_session=True`: SIGTERM to its process group (the
    frontend and its workers), SIGKILL after `grace_s`."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def alternate(
    triton_http_port: int,
    chosen: list[PeerConfiguration],
    start: Callable[[PeerConfiguration], AbstractContextManager[Target]],
    images: list[bytes],
    levels: list[int],
    seconds: float,
    rounds: int,
) -> PeerComparison:
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    tricolor_build = closed_loop.triton_request()
    tricolor = {level: closed_loop.Pooled(level) for level in levels}
    rows, machine_loads = [], []
    warm = closed_loop.Pooled(max(levels))
    closed_loop.run("127.0.0.1", triton_http_port, tricolor_build, images, warm, WARM_UP_S)
    for configuration in chosen:
        with start(configuration) as target:
            print(f"{configuration.name}: worker CPUs {target.worker_cpus}", flush=True)
            warm = closed_loop.Pooled(max(levels))
            closed_loop.run("127.0.0.1", target.port, target.build, images, warm, WARM_UP_S)
            print(f"warm-up {configuration.name}: {len(warm.latencies_s)} answers", flush=True)
            pools = {level: closed_loop.Pooled(level) for level in levels}
            for round_index in range(rounds):
                for level in levels:
                    turns = [
                        ("tricolor", triton_http_port, tricolor_build, tricolor[level]),
                        (configuration.name, target.port, target.build, pools[level]),
                    ]
                    if (round_index + level) % 2:
                        turns.reverse()
                    for name, port, build, pool in turns:
                        with Window() as window:
                            closed_loop.run("127.0.0.1", port, build, images, pool, seconds)
                        machine_loads.append(window.load)
                        print(
                            f"{configuration.name} round {round_index + 1}/{rounds} c={level} "
                            f"{name}: {pool.round_throughputs[-1]:.2f}/s; {window.load.text()}",
                            flush=True,
                        )
            rows.append(
                PeerRows(configuration, target.worker_cpus, [pools[lv].row() for lv in levels])
            )
    return PeerComparison(
        started=started,
        rounds=rounds,
        seconds=seconds,
        tricolor=[tricolor[level].row() for level in levels],
        peers=rows,
        machine_loads=machine_loads,
    )
