"""`make perf`: perf_analyzer sweeps against the embedded server, the raw in-process limit, the
TorchServe peer (if its venv exists), plots and perf/RESULTS.md.

    .venv/bin/python perf/run.py                 # everything (tens of minutes on 2 cores)
    .venv/bin/python perf/run.py --smoke         # a few seconds per step: checks the scripts
    .venv/bin/python perf/run.py --only classify_online --set resnet50.instances=2 \\
        --label resnet50-2x1 --no-report         # one experiment, kept under perf/out/<label>

Online (concurrency sweeps, one image per request, dynamic batching) and offline (client-side
batches) runs stay apart in the output and the report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import closed_loop
import tomllib
from analyzer import measure
from common import (
    MODEL_REPOSITORY,
    OUT_DIR,
    PERF_DIR,
    ROOT,
    SHARED_IMAGES,
    load_average,
    machine,
    photos,
)
from make_inputs import generate
from paired import paired_latency
from repository import prepare

from tricolor.launcher import TritonServer, start_on_free_ports


def sweeps(
    config: dict,
    server: TritonServer,
    inputs: dict[str, Path],
    out: Path,
    smoke: bool,
    only: list[str] | None,
    levels_override: str | None = None,
) -> list[dict]:
    settings = dict(config["defaults"])
    runs = config["run"]
    if smoke:
        settings.update({k: v for k, v in config["smoke"].items() if k not in ("runs", "levels")})
        runs = [run for run in runs if run["name"] in config["smoke"]["runs"]]
    if only:
        runs = [run for run in runs if run["name"] in only]
    results: list[dict] = []
    best: dict[str, float] = {}
    metrics_host = server.metrics_url.removeprefix("http://")
    for run in runs:
        levels = config["smoke"]["levels"] if smoke else run["levels"]
        if levels_override and "fractions_of" not in run:
            levels = [float(value) for value in levels_override.split(",")]
        if "fractions_of" in run:
            peak = best.get(run["fractions_of"])
            if peak is None:
                print(f"{run['name']}: skipped, {run['fractions_of']} did not run", flush=True)
                continue
            levels = [round(fraction * peak, 2) for fraction in run["levels"]]
        for level in levels:
            print(f"{run['name']}: {run['mode']} {level:g} (load {load_average()})", flush=True)
            try:
                result = measure(
                    model=run["model"],
                    grpc_url=server.grpc_url,
                    http_url=server.http_url,
                    metrics_url=metrics_host,
                    input_data=inputs[run["input"]],
                    out_csv=out / run["name"] / f"{run['mode']}_{level:g}.csv",
                    mode=run["mode"],
                    level=level,
                    batch_size=run.get("batch_size", 1),
                    measurement_ms=settings["measurement_ms"],
                    stability=settings["stability_percentage"],
                    max_trials=settings["max_trials"],
                    server_pid=server.process.pid if server.process else None,
                )
            except RuntimeError as exc:
                print(f"  failed: {str(exc)[:300]}", flush=True)
                results.append({"run": run["name"], "level": level, "error": str(exc)[-500:]})
                continue
            row = {"run": run["name"], "load": load_average(), **asdict(result)}
            results.append(row)
            print(
                f"  {result.throughput:.2f} infer/s, p50 {result.latency_ms('p50 latency'):.1f} ms,"
                f" p99 {result.latency_ms('p99 latency'):.1f} ms; core-ms per image: "
                + ", ".join(f"{k} {v:.1f}" for k, v in result.cpu_ms_per_image.items()),
                flush=True,
            )
            if run["mode"] == "concurrency":
                best[run["name"]] = max(best.get(run["name"], 0.0), result.throughput)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=PERF_DIR / "sweeps.toml")
    parser.add_argument("--images", type=Path, default=SHARED_IMAGES)
    parser.add_argument("--smoke", action="store_true", help="a few seconds per step")
    parser.add_argument("--only", action="append", help="run only these sweeps (repeatable)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        help="MODEL.KEY=VALUE on top of the config's [server] set (repeatable)",
    )
    parser.add_argument("--levels", help="comma-separated levels replacing every run's own")
    parser.add_argument("--label", default="main", help="output folder under perf/out/")
    parser.add_argument("--no-raw", action="store_true", help="skip the in-process limit")
    parser.add_argument("--no-torchserve", action="store_true", help="skip the TorchServe peer")
    parser.add_argument("--no-report", action="store_true", help="leave perf/RESULTS.md alone")
    args = parser.parse_args()

    config = tomllib.loads(args.config.read_text())
    out = OUT_DIR / args.label
    out.mkdir(parents=True, exist_ok=True)
    overrides = [*config.get("server", {}).get("set", []), *args.overrides]
    inputs = generate(args.images, OUT_DIR / "inputs", limit=4 if args.smoke else None)
    encoded = photos(args.images)
    repository = prepare(overrides, out / "repository")
    started = dt.datetime.now(dt.timezone.utc)
    summary = {
        "label": args.label,
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "overrides": overrides,
        "load_start": load_average(),
    }
    server = start_on_free_ports(
        out / "tritonserver.log", timeout_s=300, model_repository=repository
    )
    try:
        summary["sweeps"] = sweeps(config, server, inputs, out, args.smoke, args.only, args.levels)
        if not args.smoke and not args.no_torchserve:
            # the peer comparison's tricolor half: the same closed-loop HTTP client as TorchServe's
            images = list(encoded.values())
            port = int(server.http_url.rpartition(":")[2])
            summary["closed_loop"] = []
            for level in config["peer"]["levels"]:
                row = closed_loop.run(
                    "127.0.0.1",
                    port,
                    closed_loop.triton_request(),
                    images,
                    level,
                    config["peer"]["seconds"],
                )
                row["load"] = load_average()
                print(f"tricolor closed loop c={level}: {json.dumps(row)}", flush=True)
                summary["closed_loop"].append(row)
        # concurrency 1 against its in-process twin, photo by photo (the p99 goal, like for like)
        summary["paired"] = paired_latency(
            server.grpc_url,
            MODEL_REPOSITORY / "resnet50" / "1" / "model.onnx",
            dict(list(encoded.items())[:3]) if args.smoke else encoded,
            passes=1 if args.smoke else 5,
        )
        paired = summary["paired"]
        print(
            f"paired c=1: served p50 {paired['served']['p50_ms']:.1f} / p99 "
            f"{paired['served']['p99_ms']:.1f} ms, in-process p50 "
            f"{paired['in_process']['p50_ms']:.1f} / p99 {paired['in_process']['p99_ms']:.1f} ms",
            flush=True,
        )
    finally:
        server.stop()
    python = sys.executable
    if not args.no_raw:
        # after the server is gone: the limit is measured on an idle machine, same photos
        raw_args = (
            ["--seconds", "1", "--batches", "1,4", "--runtimes", "onnxruntime"]
            if (args.smoke)
            else ["--extra-model", str(MODEL_REPOSITORY / "resnet50" / "1" / "model.int8.onnx")]
        )
        subprocess.run(
            [
                python,
                str(PERF_DIR / "raw_limit.py"),
                "--images",
                str(args.images),
                "--out",
                str(out / "raw.json"),
                *raw_args,
            ],
            check=True,
        )
        summary["raw"] = json.loads((out / "raw.json").read_text())
    torchserve_python = ROOT / ".venv-torchserve" / "bin" / "python"
    if not args.no_torchserve and not args.smoke and not torchserve_python.exists():
        summary["peer_missing"] = "no .venv-torchserve: run `make torchserve-venv`"
    elif not args.no_torchserve and not args.smoke:
        (out / "torchserve.json").unlink(missing_ok=True)
        result = subprocess.run(
            [
                python,
                str(PERF_DIR / "torchserve_bench.py"),
                "--images",
                str(args.images),
                "--out",
                str(out / "torchserve.json"),
                "--levels",
                ",".join(str(level) for level in config["peer"]["levels"]),
                "--seconds",
                str(config["peer"]["seconds"]),
            ],
        )
        if result.returncode == 0:
            summary["torchserve"] = json.loads((out / "torchserve.json").read_text())
        else:  # in the report's goals, not silently left out
            summary["peer_missing"] = f"perf/torchserve_bench.py failed (exit {result.returncode})"
            print(f"TorchServe peer: {summary['peer_missing']}", flush=True)
    summary["load_end"] = load_average()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    subprocess.run([python, str(PERF_DIR / "plots.py"), str(out / "summary.json")], check=True)
    if not args.no_report and not args.smoke:
        subprocess.run([python, str(PERF_DIR / "report.py"), str(out / "summary.json")], check=True)
    print(f"perf: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
