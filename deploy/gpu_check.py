"""`make gpu-check`: prove the GPU stack on the GPU host, after `docker compose --profile gpu up`.

    .venv/bin/python -m deploy.gpu_check [--url localhost:8001] [--metrics-url URL] [--no-compose]

First the preconditions, in order; the first one missing stops the run with its reason (exit 2):
a GPU is visible (`nvidia-smi -L`), docker compose is present (`docker compose version`; not
with --no-compose), Triton answers at --url with `classify` ready, and resnet50 is served by
the TensorRT plan (not the CPU config, not the ONNX Runtime fallback). Then the checks, each
printing what it saw:
1. the plan is current for this GPU (`docker compose run --rm engine --check`);
2. `build_engines/verify.py`: the served FP16 plan against the FP32 ONNX;
3. the sample photos through `classify`: every contract output checked, WEIGHTS no fallback;
4. the metrics (METRICS_PORT): requests counted, latency summaries and GPU utilisation /
   memory exported;
5. a short perf_analyzer sweep on `classify` and on `resnet50` alone, every concurrency level
   measured stably.
Prints a summary; exit 1 if any check failed or proved nothing.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from perf.common import bundled_photos, perf_analyzer, perf_analyzer_env
from perf.inputs import generate
from tricolor.client import image_input
from tricolor.contract import OUTPUT_NAMES
from tricolor.launcher import metric_sum
from tricolor.samples import sample_photos
from tricolor.settings import MODEL_REPOSITORY, PROJECT_ROOT, Ports, default_triton_url
from tricolor.verification import contract_problems

METRICS_EXPECTED = (
    "nv_gpu_utilization",
    "nv_gpu_memory_used_bytes",
    "nv_inference_request_summary_us_count",
)
EXIT_CHECK_FAILED = 1
EXIT_PRECONDITION = 2
UNSTABLE = "Failed to obtain stable measurement"  # perf_analyzer's words, exit status still 0
PERF_CONCURRENCY = (1, 3, 5, 7)  # --concurrency-range 1:8:2


@dataclass(frozen=True)
class Outcome:
    """What a check saw, and whether that proves the point (`proved` False: it proved nothing,
    which is no pass either)."""

    passed: bool
    saw: str
    proved: bool = True

    @property
    def verdict(self) -> str:
        if not self.proved:
            return "NO PROOF"
        return "ok" if self.passed else "FAIL"


def run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, **options)
    print(result.stdout + result.stderr, flush=True)
    return result


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "(nothing)")


# ---- preconditions: each returns None, or the one reason the check cannot go on


def gpu_missing() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return "no GPU visible: nvidia-smi is not on PATH (no NVIDIA driver on this host?)"
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    gpus = [line for line in listed.stdout.splitlines() if line.startswith("GPU ")]
    if listed.returncode != 0 or not gpus:
        said = first_line(listed.stdout + listed.stderr)
        return f"no GPU visible: `nvidia-smi -L` exited {listed.returncode}: {said}"
    print("\n".join(gpus))
    return None


def compose_missing() -> str | None:
    if shutil.which("docker") is None:
        return "docker is not on PATH (or run with --no-compose to skip the engine check)"
    version = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, timeout=60
    )
    if version.returncode != 0:
        said = first_line(version.stdout + version.stderr)
        return (
            f"docker compose is not available (`docker compose version` exited "
            f"{version.returncode}: {said}); install the Compose v2 plugin, or run with "
            "--no-compose to skip the engine check"
        )
    print(first_line(version.stdout))
    return None


def server_missing(client: grpcclient.InferenceServerClient, url: str) -> str | None:
    hint = (
        "bring the stack up with `docker compose --profile gpu up -d`, or name the server with "
        "--url HOST:PORT / TRITON_URL"
    )
    try:
        ready = client.is_server_ready() and client.is_model_ready("classify")
    except InferenceServerException as exc:
        return f"no Triton answers at {url} (gRPC): {exc.message()}; {hint}"
    if not ready:
        return (
            f"Triton at {url} is up but `classify` is not ready; see `docker compose logs triton`"
        )
    print(f"Triton {client.get_server_metadata().version} at {url}, classify ready")
    return None


def plan_not_served(client: grpcclient.InferenceServerClient) -> str | None:
    config = client.get_model_config("resnet50").config
    served_by = config.platform or config.backend
    if served_by != "tensorrt_plan":
        runtime = config.parameters.get("runtime")
        detail = f" ({runtime.string_value})" if runtime is not None else ""
        return (
            f"resnet50 is served by {served_by}{detail}, not the TensorRT plan: a CPU server, or "
            "the ONNX Runtime fallback (its reason is in `docker compose logs triton` and in "
            "every answer's WEIGHTS)"
        )
    print("resnet50 is served by tensorrt_plan")
    return None


# ---- the checks


def plan_is_current() -> Outcome:
    result = run(["docker", "compose", "--profile", "gpu", "run", "--rm", "engine", "--check"])
    said = first_line(result.stdout + result.stderr)
    if result.returncode == 0:
        return Outcome(True, f"engine --check: {said}")
    return Outcome(False, f"engine --check exited {result.returncode}: {said}")


def verify(url: str) -> Outcome:
    result = run([sys.executable, str(PROJECT_ROOT / "build_engines" / "verify.py"), "--url", url])
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else first_line(result.stderr)
    return Outcome(result.returncode == 0, summary)


def classify_photos(client: grpcclient.InferenceServerClient) -> Outcome:
    photos = list(sample_photos().values())
    requested = [grpcclient.InferRequestedOutput(name) for name in OUTPUT_NAMES]
    result = client.infer("classify", [image_input(photos, grpcclient)], outputs=requested)
    outputs = {name: result.as_numpy(name) for name in OUTPUT_NAMES}
    labels = (MODEL_REPOSITORY / "postprocess" / "labels.txt").read_text().splitlines()
    problems = contract_problems(outputs, len(photos), len(labels))
    weights = sorted({value.decode() for value in outputs["WEIGHTS"].ravel()})
    problems += [f"WEIGHTS {value!r}" for value in weights if "FALLBACK" in value]
    top1 = [row[0].decode() for row in outputs["LABELS"]]
    saw = f"{len(photos)} photos, WEIGHTS {weights}, top-1 {top1}"
    return Outcome(not problems, "; ".join([saw, *problems]))


def metrics_exported(metrics_url: str) -> Outcome:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    missing = [name for name in METRICS_EXPECTED if f"\n{name}{{" not in f"\n{text}"]
    answered = metric_sum(text, "nv_inference_request_success", model="resnet50")
    problems = [f"no {name}" for name in missing]
    if answered < 1:
        problems.append("resnet50 answered no request")
    present = [name for name in METRICS_EXPECTED if name not in missing]
    saw = f"{metrics_url}: resnet50 requests answered {answered:g}, series present {present}"
    return Outcome(not problems, "; ".join([saw, *problems]))


def sweep_rows(path: Path) -> list[dict[str, str]]:
    """perf_analyzer's `-f` CSV: one row per concurrency level measured (none if it wrote none)."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("Concurrency", "").isdigit()]


def judge_sweep(label: str, returncode: int, output: str, rows: list[dict[str, str]]) -> Outcome:
    """One perf_analyzer run: failed (non-zero exit), proved nothing (it says it found no
    stable measurement, yet exits 0; or a concurrency level is missing), or ok."""
    throughput = ", ".join(
        f"c{row['Concurrency']} {float(row['Inferences/Second']):.0f}/s" for row in rows
    )
    saw = f"{label}: {throughput or 'no rows'}"
    if returncode != 0:
        return Outcome(False, f"{saw}; perf_analyzer exited {returncode}")
    measured = sorted(int(row["Concurrency"]) for row in rows)
    if UNSTABLE in output or measured != list(PERF_CONCURRENCY):
        return Outcome(False, f"{saw}; no stable measurement at every concurrency", proved=False)
    return Outcome(True, saw)


def combine(outcomes: list[Outcome]) -> Outcome:
    """A failure fails the whole; else a run that proved nothing leaves the whole unproven."""
    saw = "; ".join(outcome.saw for outcome in outcomes)
    if any(outcome.proved and not outcome.passed for outcome in outcomes):
        return Outcome(False, saw)
    return Outcome(all(o.passed for o in outcomes), saw, proved=all(o.proved for o in outcomes))


def perf_sweep(url: str) -> Outcome:
    outcomes = []
    with tempfile.TemporaryDirectory() as work:
        inputs = generate(bundled_photos(), Path(work), limit=4)
        for model, batch in (("classify", 1), ("resnet50", 8)):
            out = Path(work) / f"{model}.csv"
            result = run(
                [
                    str(perf_analyzer()), "-m", model, "-u", url, "-i", "grpc",
                    "-b", str(batch), "--input-data", str(inputs[model]),
                    "--concurrency-range", "1:8:2", "--measurement-interval", "3000",
                    "-f", str(out),
                ],
                env=perf_analyzer_env(),
                timeout=600,
            )  # fmt: skip
            output = result.stdout + result.stderr
            rows = sweep_rows(out)
            outcomes.append(
                judge_sweep(f"{model} (batch {batch})", result.returncode, output, rows)
            )
    return combine(outcomes)


def default_metrics_url(url: str) -> str:
    """The metrics endpoint on the gRPC server's host, on METRICS_PORT (8002)."""
    host = url.rsplit(":", 1)[0] if ":" in url else url
    return f"http://{host}:{Ports.from_env().metrics}/metrics"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url", default=default_triton_url(), help="Triton gRPC host:port (default: TRITON_URL)"
    )
    parser.add_argument(
        "--metrics-url", help="default: http://<--url's host>:$METRICS_PORT/metrics (8002)"
    )
    parser.add_argument("--no-compose", action="store_true", help="skip the engine --check")
    args = parser.parse_args(argv)
    metrics_url = args.metrics_url or default_metrics_url(args.url)
    print(f"gpu-check: Triton at {args.url} (gRPC), metrics at {metrics_url}", flush=True)
    client = grpcclient.InferenceServerClient(args.url)
    preconditions: list[tuple[str, Callable[[], str | None]]] = [
        ("GPU visible", gpu_missing),
        ("docker compose", compose_missing),
        ("server reachable", lambda: server_missing(client, args.url)),
        ("the plan served", lambda: plan_not_served(client)),
    ]
    if args.no_compose:
        preconditions.pop(1)
    for name, precondition in preconditions:
        print(f"\n== precondition: {name}", flush=True)
        reason = precondition()
        if reason is not None:
            print(f"\ngpu-check stopped, nothing was checked: {reason}", flush=True)
            return EXIT_PRECONDITION
    steps: list[tuple[str, Callable[[], Outcome]]] = [
        ("plan current", plan_is_current),
        ("verify FP16 vs FP32", lambda: verify(args.url)),
        ("classify contract", lambda: classify_photos(client)),
        ("metrics", lambda: metrics_exported(metrics_url)),
        ("perf sweep", lambda: perf_sweep(args.url)),
    ]
    if args.no_compose:
        steps = steps[1:]
    results = []
    for name, step in steps:
        print(f"\n== {name}", flush=True)
        try:
            outcome = step()
        except Exception as exc:  # a step that cannot even run is a failed step, not a crash
            outcome = Outcome(False, f"{type(exc).__name__}: {exc}")
        print(f"{outcome.verdict}: {outcome.saw}", flush=True)
        results.append((name, outcome))
    print("\n== summary")
    for name, outcome in results:
        print(f"{outcome.verdict:<8}  {name}: {outcome.saw}")
    return 0 if all(outcome.verdict == "ok" for _, outcome in results) else EXIT_CHECK_FAILED


if __name__ == "__main__":
    sys.exit(main())
