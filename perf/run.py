"""`make perf`: perf_analyzer sweeps against the embedded server, the raw in-process limit, the
TorchServe and LitServe peers (if their venvs exist), plots and perf/RESULTS.md. From the
repository root:

    .venv/bin/python -m perf.run                 # everything (tens of minutes on 2 cores)
    .venv/bin/python -m perf.run --smoke         # a few seconds per step: checks the harness
    .venv/bin/python -m perf.run --only classify_online --set resnet50.instances=2 \\
        --label resnet50-2x1 --no-report         # one experiment, kept under perf/out/<label>
    .venv/bin/python -m perf.run --peer-only     # the TorchServe comparison alone; rewrites
                                                 # only RESULTS.md's peer section and goal

Online (concurrency sweeps, one image per request, dynamic batching) and offline (client-side
batches) runs stay apart in the output and the report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
from pathlib import Path
from types import ModuleType

if sys.version_info >= (3, 11):
    import tomllib
else:  # the project supports 3.10
    import tomli as tomllib


from tricolor.launcher import TritonServer, start_on_free_ports
from tricolor.settings import MODEL_REPOSITORY, PROJECT_ROOT

from .analyzer import measure
from .common import OUT_DIR, PERF_DIR, load_average, machine, photos
from .inputs import generate
from .interleaved import served_vs_pipeline
from .litserve import bench as litserve
from .paired import paired_latency
from .quiet import Window, idle_baseline, verdict
from .repository import prepare
from .summary import PeerComparison, RawLimit, Summary, SweepPoint, dump, load
from .torchserve import bench


def sweeps(
    config: dict,
    server: TritonServer,
    inputs: dict[str, Path],
    out: Path,
    smoke: bool,
    only: list[str] | None,
    levels_override: str | None = None,
) -> list[SweepPoint]:
    settings = dict(config["defaults"])
    runs = config["run"]
    if smoke:
        settings.update({k: v for k, v in config["smoke"].items() if k not in ("runs", "levels")})
        runs = [run for run in runs if run["name"] in config["smoke"]["runs"]]
    if only:
        runs = [run for run in runs if run["name"] in only]
    points: list[SweepPoint] = []
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
        for level in map(float, levels):
            print(f"{run['name']}: {run['mode']} {level:g} (load {load_average()})", flush=True)
            try:
                with Window() as window:
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
                points.append(SweepPoint(run["name"], level, load_average(), error=str(exc)[-500:]))
                continue
            points.append(
                SweepPoint(
                    run["name"], level, load_average(), result=result, machine_load=window.load
                )
            )
            print(
                f"  {result.throughput:.2f} infer/s, p50 {result.latency_ms('p50 latency'):.1f} ms,"
                f" p99 {result.latency_ms('p99 latency'):.1f} ms; core-ms per image: "
                + ", ".join(f"{k} {v:.1f}" for k, v in result.cpu_ms_per_image.items())
                + f"; {window.load.text()}",
                flush=True,
            )
            if run["mode"] == "concurrency":
                best[run["name"]] = max(best.get(run["name"], 0.0), result.throughput)
    return points


def peer(
    name: str,
    module: ModuleType,
    settings: dict,
    server: TritonServer,
    images: list[bytes],
    work: Path,
) -> tuple[PeerComparison | None, str | None]:
    """One peer's comparison (perf.peers), while tricolor's server is up and otherwise idle;
    or why it was not measured."""
    venv = module.VENV.name
    if not (module.VENV / "bin" / "python").exists():
        missing = f"no {venv}: run `make {venv.removeprefix('.venv-')}-venv`"
        print(f"{name} peer: {missing}", flush=True)
        return None, missing
    known = module.configurations()
    names = settings.get("configurations", list(known))
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"{unknown} in {name}'s configurations: not one of {list(known)}")
    try:
        return module.compare(
            triton_http_port=int(server.http_url.rpartition(":")[2]),
            chosen=[known[configuration] for configuration in names],
            images=images,
            levels=settings["levels"],
            seconds=settings["seconds"],
            rounds=settings["rounds"],
            work=work,
        ), None
    except (RuntimeError, subprocess.CalledProcessError) as exc:  # in the goals, not left out
        missing = f"the {name} peer failed: {str(exc)[-300:]}"
        print(f"{name} peer: {missing}", flush=True)
        return None, missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=PERF_DIR / "sweeps.toml")
    parser.add_argument("--images", type=Path, help="photos to send (default: scikit-image's)")
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
    parser.add_argument("--no-litserve", action="store_true", help="skip the LitServe peer")
    parser.add_argument("--peer-only", action="store_true", help="only the TorchServe peer")
    parser.add_argument("--no-report", action="store_true", help="leave perf/RESULTS.md alone")
    parser.add_argument("--no-label", action="store_true", help="skip perf.label_bench")
    parser.add_argument(
        "--idle-check-s", type=float, default=5.0, help="seconds of /proc/stat before the run"
    )
    args = parser.parse_args()

    config = tomllib.loads(args.config.read_text())
    out = OUT_DIR / args.label
    out.mkdir(parents=True, exist_ok=True)
    overrides = [*config.get("server", {}).get("set", []), *args.overrides]
    encoded = photos(args.images)
    photo_list = list(encoded.values())
    inputs = generate(encoded, OUT_DIR / "inputs", limit=4 if args.smoke else None)
    repository = prepare(overrides, out / "repository")
    # before anything of ours runs: is someone else using the machine? (perf.quiet)
    baseline = idle_baseline(args.idle_check_s)
    print(f"before the run: {baseline.text()}", flush=True)
    summary = Summary(
        label=args.label,
        started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        machine=machine(),
        overrides=overrides,
        load_start=load_average(),
        quiet_baseline=baseline,
    )
    server = start_on_free_ports(
        out / "tritonserver.log", timeout_s=300, model_repository=repository
    )
    try:
        if not args.peer_only:
            summary.sweeps = sweeps(config, server, inputs, out, args.smoke, args.only, args.levels)
        if args.peer_only or not (args.smoke or args.no_torchserve):
            summary.peer, summary.peer_missing = peer(
                "TorchServe", bench, config["peer"], server, photo_list, OUT_DIR / "torchserve"
            )
        if not (args.peer_only or args.smoke or args.no_litserve):
            summary.litserve, summary.litserve_missing = peer(
                "LitServe", litserve, config["litserve"], server, photo_list, OUT_DIR / "litserve"
            )
        if not args.peer_only:
            # concurrency 1 against its in-process twin, photo by photo (the p99 goal, like
            # for like)
            with Window() as window:
                summary.paired = paired_latency(
                    server.grpc_url,
                    MODEL_REPOSITORY / "resnet50" / "1" / "model.onnx",
                    dict(list(encoded.items())[:3]) if args.smoke else encoded,
                    passes=1 if args.smoke else 5,
                )
            summary.machine_loads.append(window.load)
            # served against the same work in-process, alternating (the 0.95 goal)
            smoke = {"rounds": 1, "measurement_ms": 3000, "concurrency": 2} if args.smoke else {}
            try:
                summary.interleaved, loads = served_vs_pipeline(
                    server,
                    MODEL_REPOSITORY / "resnet50" / "1" / "model.onnx",
                    inputs["classify"],
                    photo_list,
                    out / "interleaved",
                    **{**config["interleaved"], **smoke},
                )
                summary.machine_loads += loads
            except RuntimeError as exc:  # the report says it was not measured
                print(f"interleaved: failed: {str(exc)[-300:]}", flush=True)
            served, local = summary.paired.served, summary.paired.in_process
            print(
                f"paired c=1: served p50 {served.p50_ms:.1f} / p99 {served.p99_ms:.1f} ms, "
                f"in-process p50 {local.p50_ms:.1f} / p99 {local.p99_ms:.1f} ms",
                flush=True,
            )
    finally:
        server.stop()
    python = sys.executable
    if not (args.no_raw or args.peer_only):
        # after the server is gone: the limit is measured on an idle machine, same photos
        raw_args = (
            ["--seconds", "1", "--batches", "1,4", "--runtimes", "onnxruntime"]
            if args.smoke
            else ["--extra-model", str(MODEL_REPOSITORY / "resnet50" / "1" / "model.int8.onnx")]
        )
        images = ["--images", str(args.images)] if args.images else []
        with Window() as window:
            subprocess.run(
                [
                    python,
                    "-m",
                    "perf.raw_limit",
                    *images,
                    "--out",
                    str(out / "raw.json"),
                    *raw_args,
                ],
                check=True,
                cwd=PROJECT_ROOT,
            )
        summary.machine_loads.append(window.load)
        summary.raw = load(RawLimit, out / "raw.json")
    if not (args.smoke or args.peer_only or args.no_label):
        # perf/LABEL.md (RESULTS.md quotes its headline) from this run, on its own server
        images = ["--images", str(args.images)] if args.images else []
        with Window() as window:
            subprocess.run(
                [python, "-m", "perf.label_bench", *images], check=True, cwd=PROJECT_ROOT
            )
        summary.machine_loads.append(window.load)
    summary.load_end = load_average()
    summary.not_quiet = verdict(baseline, summary.all_machine_loads())
    dump(summary, out / "summary.json")
    if not args.peer_only:
        plots = [python, "-m", "perf.plots", str(out / "summary.json")]
        subprocess.run(plots, check=True, cwd=PROJECT_ROOT)
    if summary.not_quiet:
        print("the machine was busy: these numbers are not results (perf.quiet):", flush=True)
        print("\n".join(f"  {problem}" for problem in summary.not_quiet), flush=True)
    if not (args.no_report or args.smoke):
        if summary.not_quiet:  # perf.report would refuse it too
            raise SystemExit(f"perf/RESULTS.md left alone: run again on a quiet machine ({out})")
        report = [python, "-m", "perf.report", str(out / "summary.json")]
        if args.peer_only:
            report.append("--peer-only")
        subprocess.run(report, check=True, cwd=PROJECT_ROOT)
    print(f"perf: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
