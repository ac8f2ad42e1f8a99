"""The peer: TorchServe (its own .venv-torchserve, torch inside) serving the same random-weight
torchvision ResNet-50 with its built-in `image_classifier` handler, in several worker
configurations, one TorchServe at a time (never two at once, never loaded beside tricolor).
`compare` alternates tricolor and the running configuration with the same closed loop
(perf.closed_loop), round after round, so that this VM's slow minutes fall on both alike;
tricolor's repeats are pooled over all the configurations' turns.

The configurations (on N cores): N workers x 1 thread, unpinned and pinned; 1 worker x N
threads, pinned; TorchServe's defaults. "Pinned" is TorchServe's CPU performance guide:
`cpu_launcher_enable=true` with `cpu_launcher_args=--use_logical_core` (torch's
`torch.backends.xeon.run_cpu` binds each worker to its share of the cores and sets its
threads). Setup: `make torchserve-venv`; Java 17 on PATH.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tricolor.settings import PROJECT_ROOT, free_ports

from .. import closed_loop
from ..quiet import Window
from ..summary import PeerComparison, PeerConfiguration, PeerRows

VENV = PROJECT_ROOT / ".venv-torchserve"
MODEL_SCRIPT = Path(__file__).resolve().parent / "model.py"
# load on every target before the rounds, not counted: TorchScript's profiling executor
# optimises the graph on a worker's first calls (seconds each), and Triton's stubs warm up too
WARM_UP_S = 8.0


def configurations(cores: int = os.cpu_count() or 1) -> dict[str, PeerConfiguration]:
    found = [
        PeerConfiguration(f"{cores} x 1", workers=cores, threads=1, pinned=False),
        PeerConfiguration(f"{cores} x 1 pinned", workers=cores, threads=1, pinned=True),
        PeerConfiguration(f"1 x {cores} pinned", workers=1, threads=cores, pinned=True),
        # TorchServe's own defaults: a worker per core, each with torch's default threads
        PeerConfiguration("defaults", workers=cores, threads=None, pinned=False),
    ]
    return {configuration.name: configuration for configuration in found}


@dataclass
class Running:
    configuration: PeerConfiguration
    inference_port: int
    worker_cpus: list[list[int]]  # each worker's CPU affinity: the pinning, checked


def model_archive(work: Path) -> Path:
    store = work.resolve() / "store"
    if not (store / "resnet50.mar").exists():
        subprocess.run(
            [str(VENV / "bin" / "python"), str(MODEL_SCRIPT), "--out", str(work)], check=True
        )
    return store


def wait_ready(port: int, process: subprocess.Popen, log: Path, timeout_s: float = 240) -> list:
    """The model's workers once all of them are READY; fails with the log if TorchServe exits."""
    deadline = time.monotonic() + timeout_s
    seen: object = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"torchserve exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/models/resnet50", timeout=3) as r:
                workers = json.load(r)[0].get("workers", [])
                seen = workers
                if workers and all(worker.get("status") == "READY" for worker in workers):
                    return workers
        except (OSError, ValueError, IndexError, KeyError) as exc:
            seen = exc
        time.sleep(1)
    raise RuntimeError(f"torchserve was not ready in {timeout_s:.0f} s; last seen: {seen}")


@contextlib.contextmanager
def torchserve(configuration: PeerConfiguration, store: Path, work: Path) -> Iterator[Running]:
    """One TorchServe with this configuration on free loopback ports, stopped on exit."""
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    inference, management, metrics, grpc_inference, grpc_management, workers = free_ports(6)
    settings = [
        f"inference_address=http://127.0.0.1:{inference}",
        f"management_address=http://127.0.0.1:{management}",
        f"metrics_address=http://127.0.0.1:{metrics}",
        f"grpc_inference_port={grpc_inference}",
        f"grpc_management_port={grpc_management}",
        # the workers' sockets are /tmp/.ts.sock.<port>, numbered from here: one range each
        f"initial_worker_port={workers}",
        "disable_token_authorization=true",
        "enable_envvars_config=false",
        "install_py_dep_per_model=false",
        f"model_store={store}",
        "load_models=resnet50.mar",
    ]
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(VENV / "bin"), env.get("PATH", "")])
    env["LOG_LOCATION"] = env["METRICS_LOCATION"] = str(work / "logs")
    env["TMPDIR"] = str(work)  # TorchServe's pid file lives there: one per instance
    env.pop("OMP_NUM_THREADS", None)
    if configuration.threads is not None:
        settings.append(f"default_workers_per_model={configuration.workers}")
    if configuration.pinned:  # the launcher sets each worker's threads itself
        settings += ["cpu_launcher_enable=true", "cpu_launcher_args=--use_logical_core"]
    elif configuration.threads is not None:
        env["OMP_NUM_THREADS"] = str(configuration.threads)
    (work / "config.properties").write_text("\n".join(settings) + "\n")
    log_path = work / "torchserve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(VENV / "bin" / "torchserve"), "--start", "--foreground", "--ncs",
             "--ts-config", str(work / "config.properties"), "--disable-token-auth"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=work,
        )  # fmt: skip
        try:
            workers = wait_ready(management, process, log_path)
            cpus = [sorted(os.sched_getaffinity(int(worker["pid"]))) for worker in workers]
            yield Running(configuration, inference, cpus)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def compare(
    triton_http_port: int,
    chosen: list[PeerConfiguration],
    images: list[bytes],
    levels: list[int],
    seconds: float,
    rounds: int,
    work: Path,
) -> PeerComparison:
    """tricolor's `classify` and each TorchServe configuration, interleaved: every round runs
    each concurrency on every target, the targets' order rotating from round to round."""
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    store = model_archive(work)
    tricolor = ("tricolor", triton_http_port, closed_loop.triton_request())
    tricolor_pools = {level: closed_loop.Pooled(level) for level in levels}
    peers, machine_loads = [], []
    warm = closed_loop.Pooled(max(levels))  # discarded: Triton's stubs warm up too
    closed_loop.run("127.0.0.1", triton_http_port, tricolor[2], images, warm, WARM_UP_S)
    # one TorchServe at a time, never two at once: each would take the other's cores
    for configuration in chosen:
        folder = work / configuration.name.replace(" ", "")
        with torchserve(configuration, store, folder) as running:
            print(f"torchserve {configuration.name}: worker CPUs {running.worker_cpus}")
            peer = (configuration.name, running.inference_port, closed_loop.torchserve_request())
            warm = closed_loop.Pooled(max(levels))  # TorchScript optimises on first runs
            closed_loop.run("127.0.0.1", peer[1], peer[2], images, warm, seconds=WARM_UP_S)
            print(f"warm-up {configuration.name}: {len(warm.latencies_s)} answers", flush=True)
            pools = {level: closed_loop.Pooled(level) for level in levels}
            for round_index in range(rounds):
                for level in levels:
                    order = [tricolor, peer] if (round_index + level) % 2 else [peer, tricolor]
                    for name, port, build in order:
                        pool = tricolor_pools[level] if name == "tricolor" else pools[level]
                        with Window() as window:
                            closed_loop.run("127.0.0.1", port, build, images, pool, seconds)
                        machine_loads.append(window.load)
                        print(
                            f"{configuration.name} round {round_index + 1}/{rounds} c={level} "
                            f"{name}: {pool.round_throughputs[-1]:.2f}/s; {window.load.text()}",
                            flush=True,
                        )
            peers.append(
                PeerRows(
                    configuration=configuration,
                    worker_cpus=running.worker_cpus,
                    rows=[pools[level].row() for level in levels],
                )
            )
    return PeerComparison(
        started=started,
        rounds=rounds,
        seconds=seconds,
        tricolor=[tricolor_pools[level].row() for level in levels],
        torchserve=peers,
        machine_loads=machine_loads,
    )
