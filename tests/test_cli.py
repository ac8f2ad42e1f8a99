"""The `tricolor` console script and the launcher, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tricolor.client import TricolorClient
from tricolor.launcher import python_stubs
from tricolor.settings import Ports, free_ports

from conftest import encode, generated_images

TRICOLOR = [sys.executable, "-m", "tricolor.cli"]

pytestmark = pytest.mark.integration


def run_tricolor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TRICOLOR, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    paths = []
    for name, payload in list(generated_images().items())[:2]:
        paths.append(tmp_path / name)
        paths[-1].write_bytes(payload)
    paths.append(tmp_path / "broken.jpg")
    paths[-1].write_bytes(encode(Image.new("RGB", (300, 300), "#0080FF"), "JPEG")[:500])
    return paths


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_classify_json_has_a_result_or_an_error_per_image(server, images, protocol) -> None:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    done = run_tricolor(
        "classify", *map(str, images), "--json", "--url", url, "--protocol", protocol
    )
    assert done.returncode == 1, done.stderr  # one image was refused
    results = json.loads(done.stdout)
    assert [result["path"] for result in results] == list(map(str, images))
    for result in results[:2]:
        for key in ("labels", "scores", "class_ids", "color_rgb", "color_ryb"):
            assert result[key], key
        assert len(result["labels"]) == len(result["scores"]) == len(result["class_ids"])
    assert "error" not in results[0]
    assert "row 0" in results[2]["error"] and "labels" not in results[2]


def test_classify_table_uses_triton_url(server, images) -> None:
    done = run_tricolor("classify", str(images[0]), TRITON_URL=server.grpc_url)
    assert done.returncode == 0, done.stderr
    assert images[0].name in done.stdout and "latency" in done.stdout
    assert "#" in done.stdout and "colour RGB" in done.stdout


def test_classify_says_when_no_server_listens(images) -> None:
    (port,) = free_ports(1)
    done = run_tricolor("classify", str(images[0]), "--url", f"127.0.0.1:{port}")
    assert done.returncode == 3
    assert "no ready Triton" in done.stderr and "make serve" in done.stderr


def test_serve_reports_a_port_already_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        grpc, metrics = free_ports(2)
        done = run_tricolor(
            "serve", HTTP_PORT=str(port), GRPC_PORT=str(grpc), METRICS_PORT=str(metrics)
        )
    assert done.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use (HTTP_PORT)" in done.stderr


@pytest.fixture
def serving() -> Iterator[tuple[subprocess.Popen[str], Ports]]:
    """`tricolor serve` as a user runs it, on free ports, read line by line."""
    ports = Ports(*free_ports(3))
    env = {
        **os.environ,
        "HTTP_PORT": str(ports.http),
        "GRPC_PORT": str(ports.grpc),
        "METRICS_PORT": str(ports.metrics),
    }
    serve = subprocess.Popen(
        [*TRICOLOR, "serve"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        yield serve, ports
    finally:
        serve.kill()
        serve.communicate()


def read_until(serve: subprocess.Popen[str], prefix: str) -> list[str]:
    assert serve.stdout is not None
    lines = []
    for line in serve.stdout:
        lines.append(line)
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"no line starting {prefix!r}:\n{''.join(lines[-30:])}")


def test_serve_says_where_it_listens_and_stops_cleanly_on_ctrl_c(serving) -> None:
    serve, ports = serving
    ready = read_until(serve, "tricolor ready")[-1]
    assert f"HTTP http://127.0.0.1:{ports.http}" in ready
    assert f"gRPC 127.0.0.1:{ports.grpc}" in ready
    serve.send_signal(signal.SIGINT)
    assert serve.wait(timeout=60) == 0
    rest = serve.stdout.read()
    assert "SIGINT, draining in-flight requests" in rest
    assert "successfully unloaded 'classify'" in rest


def test_serve_restarts_tritonserver_when_a_python_stub_dies(serving, images) -> None:
    serve, ports = serving
    read_until(serve, "tricolor ready")
    (tritonserver,) = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and f"PPid:\t{serve.pid}\n" in (entry / "status").read_text(errors="replace")
    ]
    victim = next(stub for stub in python_stubs(tritonserver) if stub.model == "resnet50")
    os.kill(victim.pid, signal.SIGKILL)
    lines = read_until(serve, "tricolor ready")
    assert any(f"stub(s) {victim.instance} died" in line for line in lines), lines[-30:]
    with TricolorClient(f"127.0.0.1:{ports.grpc}") as client:
        assert client.classify_one(images[0].read_bytes(), images[0].name).error is None
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=60) == 0
