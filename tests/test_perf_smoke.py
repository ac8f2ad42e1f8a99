"""CI smoke of the perf scripts (seconds, not a benchmark) and of the custom metrics.

The real load runs are `make perf`; here: the input data is well-formed, perf_analyzer runs
for a moment at concurrency 1 against the session server, its CSV parses, a plot renders, and
the custom series on the metrics endpoint move after requests.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tricolor.launcher import metric_sum
from tricolor.settings import MODEL_REPOSITORY, PROJECT_ROOT

from conftest import ARTIFACTS, SHARED_IMAGES, generated_images

sys.path.insert(0, str(PROJECT_ROOT / "perf"))

pytestmark = pytest.mark.integration


def test_input_data_is_serialised_bytes(tmp_path: Path) -> None:
    from make_inputs import generate

    paths = generate(SHARED_IMAGES, tmp_path, limit=2)
    entry = json.loads(paths["classify"].read_text())["data"][0]["IMAGE"]
    raw = base64.b64decode(entry["b64"])
    (length,) = struct.unpack("<I", raw[:4])
    assert length == len(raw) - 4 and entry["shape"] == [1]
    tensor = json.loads(paths["resnet50"].read_text())["data"][0]["input"]
    assert len(base64.b64decode(tensor["b64"])) == 3 * 224 * 224 * 4


def test_perf_analyzer_csv_and_plots(server, tmp_path: Path) -> None:
    from analyzer import measure
    from make_inputs import generate
    from plots import breakdown_plot, latency_plot

    inputs = generate(SHARED_IMAGES, tmp_path / "inputs", limit=3)
    result = measure(
        model="classify",
        grpc_url=server.grpc_url,
        http_url=server.http_url,
        metrics_url=server.metrics_url.removeprefix("http://"),
        input_data=inputs["classify"],
        out_csv=ARTIFACTS / "perf-smoke" / "classify_c1.csv",
        level=1,
        measurement_ms=1500,
        stability=999,
        max_trials=3,
        timeout_s=240,
        server_pid=server.process.pid,
    )
    assert result.throughput > 0
    assert result.row["p99 latency"] >= result.row["p50 latency"] > 0
    assert {"preprocess", "resnet50", "postprocess"} <= set(result.models)
    assert result.models["preprocess"]["compute_infer_ms"] > 0
    # the CPU accounting found every process that worked, and no more cores than there are
    for process in ("tritonserver", "preprocess", "resnet50", "postprocess", "perf_analyzer"):
        assert result.cpu_ms_per_image[process] > 0, process
    assert result.cpu_ms_per_image["resnet50"] > result.cpu_ms_per_image["postprocess"]
    assert 0 < result.cores_busy <= (os.cpu_count() or 1) + 0.5
    row = {"run": "smoke", "level": 1, "load": "", **result.__dict__}
    latency_plot("smoke", [row], tmp_path / "latency.png")
    breakdown_plot("smoke", [row], tmp_path / "breakdown.png")
    for name in ("latency.png", "breakdown.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_custom_metrics_move(server, client) -> None:
    before = server.metrics_text()
    images = generated_images()
    refused = b"definitely not an image"
    payloads = {**images, "broken.bin": refused}
    results = client.classify_many(list(payloads.values()), list(payloads))
    assert sum(result.error is None for result in results) == len(images)
    after = server.metrics_text()

    def moved(name: str, **labels: str) -> float:
        return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)

    assert moved("tricolor_decoded_images_total") >= len(images)
    assert moved("tricolor_decode_seconds_total") > 0
    assert moved("tricolor_rejected_images_total", reason="undecodable") >= 1
    # histograms: one observation per image, in cumulative buckets with +Inf = count
    assert moved("tricolor_top1_confidence_count") >= len(images)
    assert moved("tricolor_top1_confidence_bucket", le="+Inf") >= len(images)
    assert moved("tricolor_decode_seconds_count") >= len(images) + 1
    assert 0 < moved("tricolor_top1_confidence_sum") <= len(images)
    # Triton's own counters on the same endpoint
    assert moved("nv_inference_request_success", model="classify") >= len(images)
    # random weights are far below second_look_below: the second look ran (with real weights
    # some photos are confident enough; then the counter may stay)
    assert any(line.startswith("tricolor_second_looks_total{") for line in after.splitlines())


# perf scripts run by .venv (quantize.py runs in .venv-export, torchserve_model.py in
# .venv-torchserve): each must at least import and parse its arguments, since `make perf`
# reaches some of them only after tens of minutes (a broken import once dropped the peer)
@pytest.mark.parametrize(
    "script",
    [
        "compare.py",
        "decode_bench.py",
        "make_inputs.py",
        "plots.py",
        "raw_limit.py",
        "report.py",
        "run.py",
        "soak.py",
        "torchserve_bench.py",
    ],
)
def test_perf_script_starts(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "perf" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout


def test_paired_latency_runs_both_halves(server) -> None:
    from common import photos
    from paired import paired_latency

    encoded = dict(list(photos(SHARED_IMAGES).items())[:2])
    result = paired_latency(
        server.grpc_url,
        MODEL_REPOSITORY / "resnet50" / "1" / "model.onnx",
        encoded,
        passes=1,
    )
    assert result["requests"] == 2
    assert set(result["per_photo_p50_ms"]) == set(encoded)
    for side in ("served", "in_process"):
        assert 0 < result[side]["p50_ms"] <= result[side]["p99_ms"]
