"""The peer: TorchServe (its own .venv-torchserve, torch inside) serving the same random-weight
torchvision ResNet-50 with its built-in `image_classifier` handler, loaded by closed_loop.py
with the same photos and concurrencies as tricolor.

    .venv/bin/python perf/torchserve_bench.py --out perf/out/main/torchserve.json

Setup (not part of `make setup`): `make torchserve-venv` (torch, torchvision, torchserve,
torch-model-archiver, pinned). Java 17 must be on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import closed_loop
from common import OUT_DIR, ROOT, SHARED_IMAGES, load_average, photos

from tricolor.settings import free_ports

VENV = ROOT / ".venv-torchserve"


def wait_ready(port: int, process: subprocess.Popen, log: Path, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:  # e.g. "TorchServe is already running" (its pid file)
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"torchserve exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/models/resnet50", timeout=3) as r:
                if any(w.get("status") == "READY" for w in json.load(r)[0].get("workers", [])):
                    return
        except (OSError, ValueError, IndexError, KeyError):
            pass
        time.sleep(1)
    raise RuntimeError("torchserve was not ready in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=SHARED_IMAGES)
    parser.add_argument("--out", type=Path, default=OUT_DIR / "torchserve.json")
    parser.add_argument("--levels", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    args = parser.parse_args()

    work = OUT_DIR / "torchserve"
    if not (work / "store" / "resnet50.mar").exists():
        subprocess.run(
            [
                str(VENV / "bin" / "python"),
                str(ROOT / "perf" / "torchserve_model.py"),
                "--out",
                str(work),
            ],
            check=True,
        )
    inference, management, metrics = free_ports(3)
    (work / "config.properties").write_text(
        f"inference_address=http://127.0.0.1:{inference}\n"
        f"management_address=http://127.0.0.1:{management}\n"
        f"metrics_address=http://127.0.0.1:{metrics}\n"
        f"default_workers_per_model={args.workers}\n"
        "disable_token_authorization=true\n"
        "enable_envvars_config=false\n"
        "install_py_dep_per_model=false\n"
        f"model_store={work / 'store'}\n"
        "load_models=resnet50.mar\n"
    )
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(VENV / "bin"), env.get("PATH", "")])
    # the same rule as tricolor: workers x threads = cores, no oversubscription
    env["OMP_NUM_THREADS"] = str(args.threads_per_worker)
    env["LOG_LOCATION"] = str(work / "logs")
    env["METRICS_LOCATION"] = str(work / "logs")
    log = (work / "torchserve.log").open("wb")
    process = subprocess.Popen(
        [str(VENV / "bin" / "torchserve"), "--start", "--foreground", "--ncs",
         "--ts-config", str(work / "config.properties"), "--disable-token-auth"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=work,
    )  # fmt: skip
    results = []
    try:
        wait_ready(management, process, work / "torchserve.log")
        images = list(photos(args.images).values())
        for level in (int(value) for value in args.levels.split(",")):
            row = closed_loop.run(
                "127.0.0.1",
                inference,
                closed_loop.torchserve_request(),
                images,
                level,
                args.seconds,
            )
            row["load"] = load_average()
            print(f"torchserve c={level}: {json.dumps(row)}", flush=True)
            results.append(row)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "workers": args.workers,
                "threads_per_worker": args.threads_per_worker,
                "handler": "image_classifier",
                "rows": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
