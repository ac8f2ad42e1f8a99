"""CI smoke of the perf harness (seconds, not a benchmark) and of the custom metrics.

The real load runs are `make perf`; here: the input data is well-formed, perf_analyzer runs
for a moment at concurrency 1 against the session server, its summary reads back into the
plots, the paired measurement runs both halves, and the custom series on the metrics endpoint
move by exactly what the requests did.

The harness is the `perf` package, run from the repository root as `python -m perf.<module>`
(what `make perf` does); the tests run it the same way, as subprocesses, so nothing edits an
import path and what is tested is the command users run.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from perf.raw_limit import ROW_COLUMNS
from tests.helpers import encode, generated_images
from tricolor.client import Classification
from tricolor.launcher import TritonServer, metric_sum
from tricolor.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

METRICS_DEADLINE_S = 30.0


def perf(module: str, *arguments: object, timeout_s: float = 300) -> str:
    """`python -m perf.<module> ARGUMENTS` from the repository root; its stdout."""
    finished = subprocess.run(
        [sys.executable, "-m", f"perf.{module}", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=PROJECT_ROOT,
    )
    assert finished.returncode == 0, (
        f"perf.{module} exited {finished.returncode}:\n{finished.stdout[-2000:]}"
        f"\n{finished.stderr[-3000:]}"
    )
    return finished.stdout


def test_input_data_is_serialised_bytes(tmp_path: Path) -> None:
    perf("inputs", "--out", tmp_path, "--limit", 2)
    data = json.loads((tmp_path / "classify.json").read_text())["data"]
    assert len(data) == 2
    entry = data[0]["IMAGE"]
    raw = base64.b64decode(entry["b64"])
    (length,) = struct.unpack("<I", raw[:4])
    assert length == len(raw) - 4 and entry["shape"] == [1]
    assert raw[4:6] == b"\xff\xd8"  # the photo itself: a JPEG
    tensors = json.loads((tmp_path / "resnet50.json").read_text())["data"]
    assert len(tensors) == 2
    assert len(base64.b64decode(tensors[0]["input"]["b64"])) == 3 * 224 * 224 * 4


def test_perf_analyzer_summary_and_plots(server: TritonServer, tmp_path: Path) -> None:
    perf("inputs", "--out", tmp_path / "inputs", "--limit", 3)
    out = tmp_path / "one"
    assert server.process is not None
    perf(
        "analyzer",
        "--grpc-url", server.grpc_url,
        "--http-url", server.http_url,
        "--metrics-url", server.metrics_url.removeprefix("http://"),
        "--server-pid", server.process.pid,
        "--input-data", tmp_path / "inputs" / "classify.json",
        "--out", out,
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    (point,) = summary["sweeps"]
    result = point["result"]
    assert point["error"] is None and result["model"] == "classify"
    assert result["row"]["Inferences/Second"] > 0
    assert result["row"]["p99 latency"] >= result["row"]["p50 latency"] > 0
    models = result["models"]
    assert {"preprocess", "resnet50", "postprocess"} <= set(models)
    assert models["preprocess"]["ms"]["compute_infer"] > 0
    # one image per request at concurrency 1: every composing model ran every request
    assert models["preprocess"]["requests"] == models["resnet50"]["inferences"]
    # the CPU accounting found every process that worked, and no more cores than there are
    cpu = result["cpu_ms_per_image"]
    for process in ("tritonserver", "preprocess", "resnet50", "postprocess", "perf_analyzer"):
        assert cpu[process] > 0, process
    assert cpu["resnet50"] > cpu["postprocess"]
    assert 0 < result["cores_busy"] <= (os.cpu_count() or 1) + 0.5
    printed = perf("plots", out / "summary.json")
    for name in ("classify_online_latency.png", "classify_online_breakdown.png"):
        assert f"plot: {out / name}" in printed
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_paired_latency_runs_both_halves(server: TritonServer, tmp_path: Path) -> None:
    out = tmp_path / "paired.json"
    perf("paired", "--grpc-url", server.grpc_url, "--limit", 2, "--out", out)
    result = json.loads(out.read_text())
    assert result["requests"] == 2
    assert len(result["per_photo_p50_ms"]) == 2
    for side in ("served", "in_process"):
        assert 0 < result[side]["p50_ms"] <= result[side]["p99_ms"]


Series = tuple[str, tuple[tuple[str, str], ...]]  # a metric name and its label filter


def series(name: str, **labels: str) -> Series:
    return name, tuple(labels.items())


def moved(before: str, after: str, key: Series) -> float:
    name, labels = key
    return metric_sum(after, name, **dict(labels)) - metric_sum(before, name, **dict(labels))


def settled(server: TritonServer, before: str, expected: dict[Series, float]) -> str:
    """The metrics text once every series has moved by at least `expected` (Triton updates its
    own counters just after the answer is sent), or the last one seen at the deadline."""
    deadline = time.monotonic() + METRICS_DEADLINE_S
    while True:
        after = server.metrics_text()
        reached = all(moved(before, after, key) >= value for key, value in expected.items())
        if reached or time.monotonic() > deadline:
            return after
        time.sleep(0.2)  # between polls of a condition with a deadline, not a fixed wait


def test_custom_metrics_move_by_exactly_the_requests(server: TritonServer, client) -> None:
    before = server.metrics_text()
    # how many take the second look depends on the weights (with the seeded random ones the
    # flat grey, at top-1 0.13, does and the generated scenes do not), so the expected count
    # is the answers' own; test_classify's second-look test holds the counter to a mix of
    # both kinds that it sets up itself
    grey = encode(Image.new("RGB", (320, 240), "#808080"), "PNG")
    images = {**generated_images(), "grey.png": grey}
    payloads = {**images, "broken.bin": b"definitely not an image"}
    results: list[Classification] = client.classify_many(list(payloads.values()), list(payloads))
    answered = [result for result in results if result.error is None]
    assert len(answered) == len(images), [result.error for result in results]
    second_looks = sum(result.second_look for result in answered)
    count = float(len(images))
    expected = {  # one request per image; the broken one fails in preprocess
        series("tricolor_decoded_images_total"): count,
        series("tricolor_rejected_images_total", reason="undecodable"): 1.0,
        series("tricolor_decode_seconds_count"): count + 1,  # the refused one is timed too
        series("tricolor_top1_confidence_count"): count,
        series("tricolor_top1_confidence_bucket", le="+Inf"): count,
        series("tricolor_second_looks_total"): float(second_looks),
        series("nv_inference_request_success", model="classify"): count,
    }
    after = settled(server, before, expected)
    assert {key: moved(before, after, key) for key in expected} == expected
    assert 0 < moved(before, after, series("tricolor_top1_confidence_sum")) <= count
    assert moved(before, after, series("tricolor_decode_seconds_total")) > 0


# every perf entry point must at least import and parse its arguments, since `make perf`
# reaches some of them only after tens of minutes (a broken import once dropped the peer)
@pytest.mark.parametrize(
    "module",
    ["ab", "analyzer", "catalogue_bench", "compare", "inputs", "label_bench", "paired", "plots"]
    + ["raw_limit", "report", "run"],
)
def test_perf_module_starts(module: str) -> None:
    assert "usage:" in perf(module, "--help", timeout_s=120)


def test_soak_script_starts() -> None:
    finished = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "perf" / "studies" / "soak.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "usage:" in finished.stdout


def test_raw_limit_prints_a_readable_table(tmp_path: Path) -> None:
    """What `make perf SMOKE=1` shows of the in-process limit: one header, one line a row."""
    out = perf(
        "raw_limit", "--seconds", 0.2, "--batches", "1", "--threads", "1",
        "--runtimes", "onnxruntime", "--out", tmp_path / "raw.json",
    )  # fmt: skip
    assert "RawRow(" not in out, out
    lines = out.splitlines()
    header = lines.index(ROW_COLUMNS)
    first = lines[header + 1].split()
    assert first[:5] == ["onnxruntime", "model.onnx", "1", "1", "1"], lines[header + 1]
    assert float(first[5]) > 0 and json.loads((tmp_path / "raw.json").read_text())["rows"]
