"""A/B of two commits' served `classify`: run this before merging a change on the request path.

    .venv/bin/python -m perf.ab BASE [HEAD]          # e.g. `python -m perf.ab main` on a branch
    .venv/bin/python -m perf.ab fb7b736 main --concurrency 8 --rounds 6
    .venv/bin/python -m perf.ab main --smoke         # a minute: checks the tool, not a result

Each commit is checked out in its own git worktree (perf/out/ab/worktrees/<commit>, reused),
given this tree's built artefacts (model.onnx, labels, weights.json; git-ignored) and served
by this tree's launcher with that worktree's model repository, its stubs on a small venv whose
path puts that worktree's `src/` first (checked: the stubs compile its .pyc files): the
models, their configs and the package code are the commit's, tritonserver and its flags the
same for both. The config's [server] overrides apply to both
(the second look off). Both servers stay up; round by round, perf_analyzer loads one, then the
other (the order alternating), so this VM's slow minutes fall on both alike.

Printed side by side: throughput, p99, each model's compute per image (Triton's statistics) and
each process's CPU core-ms per image, per round and as the mean, with HEAD - BASE as a paired
difference and its noise (twice the standard error of the rounds' differences). Exit status:
0 no regression beyond the noise; 1 HEAD's throughput is lower (or its p99 higher) than BASE's
by more than the noise and more than `--tolerance`; 3 the machine was busy (perf.quiet says
why): the numbers are printed but are not a result; 4 a measurement failed; 2 usage.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # the project supports 3.10
    import tomli as tomllib

from tricolor.launcher import ServerOptions, TritonServer
from tricolor.settings import MODEL_REPOSITORY, PROJECT_ROOT, Ports, free_ports

from .analyzer import measure
from .common import OUT_DIR, PERF_DIR, photos
from .inputs import generate
from .quiet import MachineLoad, Window, idle_baseline, verdict
from .repository import prepare
from .summary import Measurement

AB_DIR = OUT_DIR / "ab"
# git-ignored files a served model repository needs, made by `make setup` in this tree
ARTEFACTS = (
    "resnet50/1/model.onnx",
    "postprocess/labels.txt",
    "postprocess/weights.json",
)
EXIT_REGRESSION, EXIT_USAGE, EXIT_BUSY, EXIT_FAILED = 1, 2, 3, 4


def resolve(commit: str) -> str:
    found = subprocess.run(
        ["git", "rev-parse", "--short=10", f"{commit}^{{commit}}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        raise SystemExit(f"perf.ab: {commit!r} is not a commit: {found.stderr.strip()}")
    return found.stdout.strip()


def worktree(commit: str) -> Path:
    """The commit checked out under perf/out/ab/worktrees (detached), with this tree's
    artefacts linked in."""
    path = AB_DIR / "worktrees" / commit
    if not (path / ".git").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "prune"], cwd=PROJECT_ROOT, check=True)
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--force", str(path), commit],
            cwd=PROJECT_ROOT,
            check=True,
            capture_output=True,
        )
    for artefact in ARTEFACTS:
        source, target = MODEL_REPOSITORY / artefact, path / "model_repository" / artefact
        if not source.exists():
            raise SystemExit(f"perf.ab: {source} is missing: run `make setup` in this tree")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source.resolve())
    return path


def commit_venv(commit: str, checkout: Path) -> Path:
    """A venv (no pip, seconds to make) whose path is the checkout's `src/` first, then this
    tree's .venv: the models' stubs take their packages from `python3` on PATH, not from
    PYTHONPATH, so this is how they import the commit's `tricolor`."""
    venv = AB_DIR / "venvs" / commit
    python = venv / "bin" / "python3"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    ours = [Path(path) for path in sys.path if path.endswith("site-packages")]
    found = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [str(checkout / "src"), *(f"import site; site.addsitedir({str(p)!r})" for p in ours)]
    (Path(found.stdout.strip()) / "00-perf-ab.pth").write_text("\n".join(lines) + "\n")
    return venv


class CommitServer(TritonServer):
    """This tree's launcher serving another checkout, its stubs on that checkout's venv."""

    def __init__(self, venv: Path, repository: Path) -> None:
        super().__init__(ServerOptions(ports=Ports(*free_ports(3)), model_repository=repository))
        self.venv = venv

    def environment(self, installation) -> dict[str, str]:
        env = super().environment(installation)
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), env["PATH"]])
        return env


def imported_from(checkout: Path, since: float) -> bool:
    """Whether a process compiled the checkout's `tricolor` since `since` (its .pyc files)."""
    cache = checkout / "src" / "tricolor" / "__pycache__"
    return any(path.stat().st_mtime >= since for path in cache.glob("*.pyc"))


def uses_package(checkout: Path) -> bool:
    """Whether the commit's models import `tricolor` (older ones kept their code beside them)."""
    models = (checkout / "model_repository").glob("*/1/model.py")
    return any("from tricolor" in path.read_text() for path in models)


@dataclass
class Side:
    """One commit's server and what each round measured on it."""

    name: str
    commit: str
    server: CommitServer
    rounds: list[Measurement] = field(default_factory=list)
    loads: list[MachineLoad] = field(default_factory=list)


def start(side_name: str, commit: str, overrides: list[str]) -> Side:
    checkout = worktree(commit)
    repository = prepare(overrides, AB_DIR / "repositories" / commit, checkout / "model_repository")
    server = CommitServer(commit_venv(commit, checkout), repository)
    # compiled afresh by whichever process imports it: the proof the stubs run this checkout
    shutil.rmtree(checkout / "src" / "tricolor" / "__pycache__", ignore_errors=True)
    started = time.time() - 1
    log = AB_DIR / f"tritonserver-{commit}.log"
    with log.open("wb") as handle:
        server.start(stdout=handle, stderr=subprocess.STDOUT)
    try:
        server.wait_ready(timeout_s=300)
    except BaseException:
        server.stop(drain=False)
        print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    if uses_package(checkout) and not imported_from(checkout, started):
        server.stop(drain=False)
        raise SystemExit(f"perf.ab: {commit}'s models did not import {checkout / 'src'}")
    print(f"{side_name} {commit}: serving {repository} on {server.grpc_url}", flush=True)
    return Side(side_name, commit, server)


def compute_ms_per_image(result: Measurement, model: str) -> float | None:
    """Triton's compute time (input + infer + output) of one model, per image: every request
    of a batch reports the batch's whole time, so per request / mean batch."""
    breakdown = result.models.get(model)
    if breakdown is None or not breakdown.inferences:
        return None
    per_request = sum(
        breakdown.ms.get(f"compute_{phase}", 0.0) for phase in ("input", "infer", "output")
    )
    return per_request * breakdown.requests / breakdown.inferences / breakdown.mean_batch


def metrics(result: Measurement) -> dict[str, float]:
    """What is compared: throughput, p99, each model's compute per image, CPU per image."""
    values = {
        "images/s": result.throughput,
        "p99 ms": result.latency_ms("p99 latency"),
    }
    for model in ("preprocess", "resnet50", "postprocess"):
        compute = compute_ms_per_image(result, model)
        if compute is not None:
            values[f"{model} compute ms/image"] = compute
    for process, core_ms in sorted(result.cpu_ms_per_image.items()):
        values[f"{process} core-ms/image"] = core_ms
    return values


@dataclass
class Difference:
    metric: str
    base: float
    head: float
    change: float  # mean of the rounds' relative differences (head - base) / base
    noise: float  # twice their standard error (0 with one round)

    @property
    def beyond_noise(self) -> bool:
        return abs(self.change) > self.noise


def differences(base: list[dict[str, float]], head: list[dict[str, float]]) -> list[Difference]:
    found = []
    for metric in base[0]:
        pairs = [
            (b[metric], h[metric])
            for b, h in zip(base, head, strict=True)
            if metric in b and metric in h
        ]
        relative = [(h - b) / b for b, h in pairs if b]
        if not relative:
            continue
        noise = 2 * statistics.stdev(relative) / len(relative) ** 0.5 if len(relative) > 1 else 0.0
        found.append(
            Difference(
                metric,
                statistics.fmean(b for b, _ in pairs),
                statistics.fmean(h for _, h in pairs),
                statistics.fmean(relative),
                noise,
            )
        )
    return found


def regressions(found: list[Difference], tolerance: float) -> list[str]:
    """Lower throughput or higher p99, beyond the noise and beyond `tolerance` (relative)."""
    worse = {"images/s": -1.0, "p99 ms": 1.0}
    return [
        f"{d.metric}: {100 * d.change:+.1f} % (noise +-{100 * d.noise:.1f} %)"
        for d in found
        if d.metric in worse and d.change * worse[d.metric] > tolerance and d.beyond_noise
    ]


def table(base: Side, head: Side, found: list[Difference]) -> str:
    lines = [
        f"| metric | {base.name} {base.commit} | {head.name} {head.commit} | change | noise |",
        "|---|---|---|---|---|",
    ]
    for d in found:
        flag = " **beyond noise**" if d.beyond_noise else ""
        lines.append(
            f"| {d.metric} | {d.base:.2f} | {d.head:.2f} | {100 * d.change:+.1f} %{flag} "
            f"| +-{100 * d.noise:.1f} % |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the commit to compare against (e.g. main)")
    parser.add_argument("head", nargs="?", default="HEAD", help="the commit tested (HEAD)")
    parser.add_argument("--concurrency", type=int, default=8, help="perf_analyzer's clients")
    parser.add_argument("--rounds", type=int, default=4, help="measurements per commit")
    parser.add_argument("--measurement-ms", type=int, default=5000)
    parser.add_argument("--images", type=Path, help="photos to send (default: scikit-image's)")
    parser.add_argument("--config", type=Path, default=PERF_DIR / "sweeps.toml")
    parser.add_argument("--tolerance", type=float, default=0.02, help="relative (0.02 = 2 %%)")
    parser.add_argument(
        "--smoke", action="store_true", help="2 rounds of 4 s at concurrency 2: checks the tool"
    )
    args = parser.parse_args()
    if args.smoke:  # windows long enough for a loaded machine to finish a few requests
        args.rounds, args.measurement_ms, args.concurrency = 2, 4000, 2
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    commits = resolve(args.base), resolve(args.head)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--", "src", "model_repository"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    ).stdout
    if status.strip() and args.head == "HEAD":
        print("perf.ab: uncommitted changes under src/ or model_repository/ are not measured")
    overrides = tomllib.loads(args.config.read_text()).get("server", {}).get("set", [])
    AB_DIR.mkdir(parents=True, exist_ok=True)
    inputs = generate(photos(args.images), AB_DIR / "inputs", limit=4 if args.smoke else None)
    baseline = idle_baseline()
    print(f"before: {baseline.text()}", flush=True)
    sides: list[Side] = []
    try:
        for name, commit in zip(("BASE", "HEAD"), commits, strict=True):
            sides.append(start(name, commit, overrides))
        for round_index in range(args.rounds):
            order = sides if round_index % 2 == 0 else sides[::-1]
            for side in order:
                with Window() as window:
                    result = measure(
                        model="classify",
                        grpc_url=side.server.grpc_url,
                        http_url=side.server.http_url,
                        metrics_url=None,
                        input_data=inputs["classify"],
                        out_csv=AB_DIR / side.commit / f"round{round_index + 1}.csv",
                        level=args.concurrency,
                        measurement_ms=args.measurement_ms,
                        stability=999,
                        max_trials=3,
                        server_pid=side.server.process.pid,
                    )
                side.rounds.append(result)
                side.loads.append(window.load)
                print(
                    f"round {round_index + 1}/{args.rounds} {side.name} {side.commit}: "
                    f"{result.throughput:.2f} img/s, p99 {result.latency_ms('p99 latency'):.1f} ms"
                    f"; {window.load.text()}",
                    flush=True,
                )
    except RuntimeError as exc:  # perf_analyzer could not measure: say why, no traceback
        print(f"perf.ab: {str(exc)[-1500:]}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    finally:
        for side in sides:
            side.server.stop(drain=False)
    base, head = sides
    found = differences([metrics(r) for r in base.rounds], [metrics(r) for r in head.rounds])
    print(f"\nclassify, concurrency {args.concurrency}, {args.rounds} rounds each, alternated:")
    print(table(base, head, found))
    busy = verdict(baseline, base.loads + head.loads)
    worse = regressions(found, args.tolerance)
    if busy:
        print("\nthe machine was busy: these numbers are not a result (perf.quiet):")
        print("\n".join(f"  {problem}" for problem in busy))
    if worse:
        print(f"\nregression beyond the noise and {100 * args.tolerance:g} %: " + "; ".join(worse))
    if busy:
        sys.exit(EXIT_BUSY)
    if worse:
        sys.exit(EXIT_REGRESSION)
    print("\nno regression beyond the noise")


if __name__ == "__main__":
    main()
