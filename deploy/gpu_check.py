"""`make gpu-check`: prove the GPU stack on the GPU host, after `docker compose --profile gpu up`.

    .venv/bin/python -m deploy.gpu_check [--url localhost:8001] [--metrics-url URL] [--no-compose]

1. the plan is current for this GPU (`docker compose run --rm engine --check`);
2. `build_engines/verify.py`: the served FP16 plan against the FP32 ONNX;
3. resnet50 is served by the plan (`tensorrt_plan`), not the fallback, and WEIGHTS says so;
4. the sample photos through `classify`: every contract output checked;
5. the metrics: requests counted, latency summaries and GPU utilisation / memory exported;
6. a short perf_analyzer sweep on `classify` and on `resnet50` alone.
Prints a summary; exit 1 if any step failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

import tritonclient.grpc as grpcclient

from perf.common import bundled_photos, perf_analyzer, perf_analyzer_env
from perf.inputs import generate
from tricolor.client import image_input
from tricolor.contract import OUTPUT_NAMES
from tricolor.launcher import metric_sum
from tricolor.samples import sample_photos
from tricolor.settings import MODEL_REPOSITORY, PROJECT_ROOT, default_triton_url
from tricolor.verification import contract_problems

METRICS_EXPECTED = (
    "nv_gpu_utilization",
    "nv_gpu_memory_used_bytes",
    "nv_inference_request_summary_us_count",
)


def run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, **options)
    print(result.stdout + result.stderr, flush=True)
    return result


def plan_is_current() -> str | None:
    result = run(["docker", "compose", "--profile", "gpu", "run", "--rm", "engine", "--check"])
    return None if result.returncode == 0 else "the plan is stale for this GPU (see above)"


def verify(url: str) -> str | None:
    result = run([sys.executable, str(PROJECT_ROOT / "build_engines" / "verify.py"), "--url", url])
    return None if result.returncode == 0 else "FP16 plan and FP32 ONNX disagree (table above)"


def served_by_the_plan(client: grpcclient.InferenceServerClient) -> str | None:
    config = client.get_model_config("resnet50").config
    if config.platform != "tensorrt_plan":
        return f"resnet50 is served by {config.platform or config.backend}: the fallback"
    return None


def classify_photos(client: grpcclient.InferenceServerClient) -> str | None:
    photos = list(sample_photos().values())
    requested = [grpcclient.InferRequestedOutput(name) for name in OUTPUT_NAMES]
    result = client.infer("classify", [image_input(photos, grpcclient)], outputs=requested)
    outputs = {name: result.as_numpy(name) for name in OUTPUT_NAMES}
    labels = (MODEL_REPOSITORY / "postprocess" / "labels.txt").read_text().splitlines()
    problems = contract_problems(outputs, len(photos), len(labels))
    weights = {value.decode() for value in outputs["WEIGHTS"].ravel()}
    problems += [f"WEIGHTS {value!r}" for value in weights if "FALLBACK" in value]
    print(f"WEIGHTS {sorted(weights)}; top-1 {[row[0].decode() for row in outputs['LABELS']]}")
    return "; ".join(problems) or None


def metrics_exported(metrics_url: str) -> str | None:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    missing = [name for name in METRICS_EXPECTED if f"\n{name}{{" not in f"\n{text}"]
    answered = metric_sum(text, "nv_inference_request_success", model="resnet50")
    print(f"resnet50 requests answered: {answered:g}")
    problems = [f"no {name}" for name in missing]
    if answered < 1:
        problems.append("resnet50 answered no request")
    return "; ".join(problems) or None


def perf_sweep(url: str) -> str | None:
    failures = []
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
            if result.returncode != 0:
                failures.append(f"perf_analyzer on {model} exited {result.returncode}")
    return "; ".join(failures) or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=default_triton_url(), help="Triton gRPC host:port")
    parser.add_argument("--metrics-url", default="http://localhost:8002/metrics")
    parser.add_argument("--no-compose", action="store_true", help="skip the engine --check")
    args = parser.parse_args(argv)
    client = grpcclient.InferenceServerClient(args.url)
    steps: list[tuple[str, Callable[[], str | None]]] = [
        ("plan current", plan_is_current),
        ("verify FP16 vs FP32", lambda: verify(args.url)),
        ("resnet50 is the plan", lambda: served_by_the_plan(client)),
        ("classify contract", lambda: classify_photos(client)),
        ("metrics", lambda: metrics_exported(args.metrics_url)),
        ("perf sweep", lambda: perf_sweep(args.url)),
    ]
    if args.no_compose:
        steps = steps[1:]
    results = []
    for name, step in steps:
        print(f"\n== {name}", flush=True)
        try:
            problem = step()
        except Exception as exc:  # a step that cannot even run is a failed step, not a crash
            problem = f"{type(exc).__name__}: {exc}"
        results.append((name, problem))
    print("\n== summary")
    for name, problem in results:
        verdict, detail = ("ok  ", "") if problem is None else ("FAIL", f": {problem}")
        print(f"{verdict}  {name}{detail}")
    return 1 if any(problem is not None for _, problem in results) else 0


if __name__ == "__main__":
    sys.exit(main())
