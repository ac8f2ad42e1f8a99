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
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tricolor.settings import PROJECT_ROOT, free_ports

from .. import closed_loop, peers
from ..summary import PeerComparison, PeerConfiguration

VENV = PROJECT_ROOT / ".venv-torchserve"
MODEL_SCRIPT = Path(__file__).resolve().parent / "model.py"


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
    """tricolor's `classify` and each TorchServe configuration in turn (perf.peers)."""
    store = model_archive(work)

    @contextlib.contextmanager
    def start(configuration: PeerConfiguration) -> Iterator[peers.Target]:
        folder = work / configuration.name.replace(" ", "")
        with torchserve(configuration, store, folder) as running:
            yield peers.Target(
                running.inference_port, closed_loop.torchserve_request(), running.worker_cpus
            )

    return peers.alternate(triton_http_port, chosen, start, images, levels, seconds, rounds)
