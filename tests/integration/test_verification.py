"""`make gpu-check`'s checks: the FP16-vs-FP32 comparison and the contract check of an answer.

The pure functions on made-up numbers first (each verdict can go both ways), then verify.py
and the contract check end to end against the embedded CPU server, where resnet50 runs the
same FP32 ONNX (so the agreement must be exact); and `make gpu-check` itself, which on this
host and against the CPU server must stop at its preconditions with the right reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.helpers import infer, photo_bytes
from tricolor.contract import OUTPUT_NAMES
from tricolor.settings import MODEL_REPOSITORY, PROJECT_ROOT, free_ports
from tricolor.verification import (
    SOFTMAX_TOLERANCE,
    agreement_table,
    compare_logits,
    contract_problems,
)

VERIFY = PROJECT_ROOT / "build_engines" / "verify.py"


def test_close_logits_agree_and_a_flipped_top1_fails() -> None:
    reference = np.array([[4.0, 1.0, 0.0], [0.0, 3.0, 2.9]], dtype=np.float32)
    close = reference + np.float32(1e-3)
    flipped = reference.copy()
    flipped[1] = [0.0, 2.9, 3.0]
    rows = compare_logits(["cat", "cup"], close, reference)
    assert all(row.passed(SOFTMAX_TOLERANCE) for row in rows)
    cat, cup = compare_logits(["cat", "cup"], flipped, reference)
    assert cat.passed(SOFTMAX_TOLERANCE) and not cup.passed(SOFTMAX_TOLERANCE)
    assert (cup.served_top1, cup.reference_top1) == (2, 1)
    table = agreement_table([cat, cup], SOFTMAX_TOLERANCE)
    assert "top-1 agreement 1/2" in table and "FAIL" in table.splitlines()[2]


def test_a_softmax_drift_past_the_tolerance_fails_with_the_same_top1() -> None:
    reference = np.array([[2.0, 1.0]], dtype=np.float32)
    (row,) = compare_logits(["photo"], np.array([[2.5, 1.0]], dtype=np.float32), reference)
    assert row.served_top1 == row.reference_top1
    assert row.max_softmax_difference > SOFTMAX_TOLERANCE and not row.passed(SOFTMAX_TOLERANCE)


def good_answer() -> dict[str, np.ndarray]:
    return {
        "LABELS": np.array([[b"tabby", b"tiger cat"]], dtype=object),
        "SCORES": np.array([[0.7, 0.2]], dtype=np.float32),
        "CLASS_IDS": np.array([[281, 282]], dtype=np.int32),
        "COLOR_RGB": np.array([[b"#FF8000"]], dtype=object),
        "COLOR_RYB": np.array([[b"#FC600A"]], dtype=object),
    }


@pytest.mark.parametrize(
    ("output", "value", "expected"),
    [
        ("SCORES", np.array([[0.2, 0.7]], dtype=np.float32), "not descending"),
        ("SCORES", np.array([[1.5, 0.2]], dtype=np.float32), "outside [0, 1]"),
        ("CLASS_IDS", np.array([[281, 1000]], dtype=np.int32), "CLASS_IDS outside"),
        ("CLASS_IDS", np.array([[281, 282]], dtype=np.int64), "CLASS_IDS is int64"),
        ("COLOR_RGB", np.array([[b"#ff8000"]], dtype=object), "not a palette colour"),
        ("COLOR_RYB", np.array([[b"#FF8000"]], dtype=object), "not a palette colour"),
        ("LABELS", np.array([[b"tabby"]], dtype=object), "expected the same"),
    ],
)
def test_contract_check_names_what_is_wrong(output: str, value: np.ndarray, expected: str) -> None:
    assert contract_problems(good_answer(), rows=1, num_labels=1000) == []
    answer = {**good_answer(), output: value}
    problems = contract_problems(answer, rows=1, num_labels=1000)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.integration
def test_verify_against_the_cpu_server_agrees_exactly(server) -> None:
    """Same ONNX, same runtime: the softmax may differ only in its last float32 bits, far
    inside the GPU's FP16 tolerance (a served model that scaled its logits by 1 % still has
    the same top-1 everywhere and passes that tolerance)."""
    result = subprocess.run(
        [sys.executable, str(VERIFY), "--url", server.grpc_url, "--tolerance", "1e-6"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resnet50 served by python" in result.stdout
    assert "top-1 agreement 5/5" in result.stdout, result.stdout
    (largest,) = re.findall(r"largest softmax difference (\S+) ", result.stdout)
    assert float(largest) <= 1e-6, result.stdout


@pytest.mark.integration
def test_a_real_classify_answer_keeps_the_contract(grpc_client) -> None:
    photos = list(photo_bytes().values())
    outputs = infer(grpc_client, grpcclient, photos, outputs=OUTPUT_NAMES)
    labels = (MODEL_REPOSITORY / "postprocess" / "labels.txt").read_text().splitlines()
    assert contract_problems(outputs, len(photos), len(labels)) == []


def gpu_check(path: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`make gpu-check` as run on a host whose PATH is `path` (the system's commands are
    reached through it: nvidia-smi, docker)."""
    return subprocess.run(
        [sys.executable, "-m", "deploy.gpu_check", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PATH": path, **env},
    )


@pytest.fixture
def fake_gpu_host(tmp_path: Path) -> str:
    """A PATH whose `nvidia-smi -L` lists a GPU (the one thing this host cannot have), then the
    real PATH (this host's docker CLI has no compose plugin)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    nvidia_smi = bin_dir / "nvidia-smi"
    nvidia_smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n")
    nvidia_smi.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def stopped_for(done: subprocess.CompletedProcess[str]) -> str:
    """The one reason gpu-check stopped for; it must have checked nothing."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "== summary" not in done.stdout and "== verify" not in done.stdout, done.stdout
    (line,) = [line for line in done.stdout.splitlines() if "gpu-check stopped" in line]
    return line


def test_gpu_check_stops_without_a_gpu(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no GPU visible: nvidia-smi is not on PATH" in stopped_for(gpu_check(str(empty)))


@pytest.mark.skipif(
    subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    if shutil.which("docker")
    else False,
    reason="this host has docker compose",
)
def test_gpu_check_stops_without_docker_compose(fake_gpu_host: str) -> None:
    reason = stopped_for(gpu_check(fake_gpu_host))
    assert ("docker compose is not available" in reason) or ("docker is not on PATH" in reason)


def test_gpu_check_stops_without_a_server(fake_gpu_host: str) -> None:
    (port,) = free_ports(1)
    done = gpu_check(fake_gpu_host, "--no-compose", "--url", f"127.0.0.1:{port}")
    assert f"no Triton answers at 127.0.0.1:{port} (gRPC)" in stopped_for(done)


def test_gpu_check_stops_on_a_cpu_server(server, fake_gpu_host: str) -> None:
    (metrics_port,) = free_ports(1)
    done = gpu_check(
        fake_gpu_host, "--no-compose", "--url", server.grpc_url, METRICS_PORT=str(metrics_port)
    )
    reason = stopped_for(done)
    assert "resnet50 is served by python (onnxruntime), not the TensorRT plan" in reason
    host = server.grpc_url.rsplit(":", 1)[0]
    assert f"metrics at http://{host}:{metrics_port}/metrics" in done.stdout
