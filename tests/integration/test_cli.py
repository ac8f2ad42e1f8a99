"""The `tricolor` console script and the launcher, as a user runs them."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from PIL import Image

from tests.helpers import encode, generated_images
from tricolor.client import TricolorClient
from tricolor.launcher import python_stubs
from tricolor.settings import MODEL_REPOSITORY, SERVER_ADDRESS_RULE, Ports, free_ports

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
    assert done.returncode == 5, done.stderr  # one image was refused
    results = json.loads(done.stdout)
    assert [result["path"] for result in results] == list(map(str, images))
    for result in results[:2]:
        for key in ("labels", "scores", "class_ids", "color_rgb", "color_ryb"):
            assert result[key], key
        assert len(result["labels"]) == len(result["scores"]) == len(result["class_ids"])
    assert "error" not in results[0]
    # the server's reason as a person needs it: no ensemble name, no row of a one-image request
    assert results[2]["error"].startswith("cannot decode image: "), results[2]["error"]
    assert "labels" not in results[2]


def exported_weights() -> str:
    """What the export recorded (`weights.json`), read here rather than from the server."""
    return json.loads((MODEL_REPOSITORY / "postprocess" / "weights.json").read_text())["weights"]


@pytest.mark.parametrize("flags", [["--json"], []], ids=["json", "table"])
def test_random_weights_warning_on_stderr_in_both_formats(server, images, flags) -> None:
    done = run_tricolor("classify", str(images[0]), *flags, TRITON_URL=server.grpc_url)
    assert done.returncode == 0, done.stderr
    weights = exported_weights()
    if weights in ("random", "random_fallback"):  # CI; a machine with the checkpoint exports
        assert (  # ImageNet's, or a user's checkpoint: then no warning
            f"tricolor: WARNING: ResNet-50 runs seeded RANDOM weights (weights={weights}): its "
            "labels mean nothing. For ImageNet weights, put resnet50-11ad3fa6.pth in "
            "~/.cache/torch/hub/checkpoints/ (or allow the download), run "
            "'.venv-export/bin/python build_engines/export.py --force' and restart the server."
        ) in done.stderr
    else:
        assert "WARNING" not in done.stderr
    assert "WARNING" not in done.stdout
    if flags:
        json.loads(done.stdout)  # still one parseable array


def test_classify_table_uses_triton_url(server, images) -> None:
    done = run_tricolor("classify", *map(str, images), TRITON_URL=server.grpc_url)
    assert done.returncode == 5, done.stderr  # broken.jpg was refused
    assert images[0].name in done.stdout and "latency" in done.stdout
    assert "#" in done.stdout and "colour RGB" in done.stdout
    assert f"{images[2]}: refused: cannot decode image: " in done.stdout
    assert "ensemble" not in done.stdout and "row 0" not in done.stdout


def test_classify_walks_a_folder_recognising_images_by_content(server, tmp_path) -> None:
    photos = list(generated_images().values())
    nested = tmp_path / "album" / "2024"
    nested.mkdir(parents=True)
    (tmp_path / "album" / "a.png").write_bytes(photos[1])
    (nested / "no_extension").write_bytes(photos[0])  # a JPEG by content alone
    (nested / "notes.txt").write_text("not an image")
    (nested / "text.jpg").write_text("a text file named like a photo")
    (tmp_path / "album" / ".hidden.png").write_bytes(photos[1])
    done = run_tricolor("classify", str(tmp_path / "album"), "--json", TRITON_URL=server.grpc_url)
    assert done.returncode == 5, done.stderr  # text.jpg goes to the server, which refuses it
    results = {Path(result["path"]).name: result for result in json.loads(done.stdout)}
    assert sorted(results) == ["a.png", "no_extension", "text.jpg"]
    assert results["a.png"]["labels"] and results["no_extension"]["labels"]
    assert results["text.jpg"]["error"] == "not a recognised image format"


def test_classify_names_a_path_that_does_not_exist(images, tmp_path) -> None:
    missing = tmp_path / "nowhere"
    done = run_tricolor("classify", str(images[0]), str(missing))
    assert done.returncode == 2
    assert f"no such file or folder: {missing}" in done.stderr


def test_classify_says_when_no_server_listens(images) -> None:
    (port,) = free_ports(1)
    done = run_tricolor("classify", str(images[0]), "--url", f"127.0.0.1:{port}")
    assert done.returncode == 3
    assert "no ready Triton" in done.stderr and "make serve" in done.stderr
    assert "--url HOST:PORT" in done.stderr and "TRITON_URL" in done.stderr


def test_http_looks_on_triton_urls_host_at_http_port(server, images) -> None:
    """One rule for both protocols: TRITON_URL names the server, HTTP_PORT its HTTP port."""
    http_port = server.http_url.rsplit(":", 1)[1]
    done = run_tricolor(
        "classify", str(images[0]), "--json", "--protocol", "http",
        TRITON_URL=server.grpc_url, HTTP_PORT=http_port,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["labels"]
    # another host in TRITON_URL (loopback, where nothing listens): HTTP goes there too
    elsewhere = run_tricolor(
        "classify", str(images[0]), "--protocol", "http",
        TRITON_URL=f"127.0.0.2:{server.grpc_url.rsplit(':', 1)[1]}", HTTP_PORT=http_port,
    )  # fmt: skip
    assert elsewhere.returncode == 3, elsewhere.stderr
    assert f"no ready Triton with `classify` at 127.0.0.2:{http_port} (http)" in elsewhere.stderr
    assert SERVER_ADDRESS_RULE in elsewhere.stderr


def test_classify_exits_4_when_the_server_does_not_answer(server, images) -> None:
    """A request past its deadline got no answer: exit 4 (run again), not 5 (bad input)."""
    done = run_tricolor("classify", str(images[0]), "--timeout", "0.001", "--url", server.grpc_url)
    assert done.returncode == 4, done.stdout + done.stderr
    assert f"{images[0]}: not answered: " in done.stdout and "refused" not in done.stdout


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


def test_serve_system_without_tritonserver_says_what_helps_in_that_mode() -> None:
    done = run_tricolor("serve", "--tritonserver", "system", PATH=str(Path(sys.executable).parent))
    assert done.returncode == 1
    assert "--tritonserver system: no `tritonserver` on PATH" in done.stderr, done.stderr
    assert "/opt/tritonserver/bin" in done.stderr and "make setup" not in done.stderr
    assert "Traceback" not in done.stderr


@dataclass
class Serving:
    """`tricolor serve` as a user runs it; a thread collects its output line by line."""

    process: subprocess.Popen[str]
    ports: Ports
    lines: queue.Queue[str]

    def read_until(self, text: str, timeout_s: float = 240.0) -> list[str]:
        """The lines up to the first containing `text`; a failure, not a hang, after that."""
        deadline, lines = time.monotonic() + timeout_s, []
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            if not line:  # the output ended
                break
            lines.append(line)
            if text in line:
                return lines
        raise AssertionError(f"no line with {text!r}:\n{''.join(lines[-40:])}")


@pytest.fixture
def serving() -> Iterator[Serving]:
    ports = Ports(*free_ports(3))
    env = {
        **os.environ,
        "HTTP_PORT": str(ports.http),
        "GRPC_PORT": str(ports.grpc),
        "METRICS_PORT": str(ports.metrics),
    }
    process = subprocess.Popen(
        [*TRICOLOR, "serve"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: queue.Queue[str] = queue.Queue()

    def collect() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put("")

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    try:
        yield Serving(process, ports, lines)
    finally:
        process.kill()
        process.wait()
        collector.join(timeout=90)
        process.stdout.close()


def test_serve_says_where_it_listens_and_stops_cleanly_on_ctrl_c(serving: Serving) -> None:
    ready = serving.read_until("tricolor ready")[-1]
    assert f"HTTP http://127.0.0.1:{serving.ports.http}" in ready
    assert f"gRPC 127.0.0.1:{serving.ports.grpc}" in ready
    # the command the README gives, runnable as printed from the repository root
    hint = serving.read_until("  try: ")[-1]
    assert f".venv/bin/tricolor classify --url 127.0.0.1:{serving.ports.grpc} IMAGE" in hint
    serving.process.send_signal(signal.SIGINT)
    assert serving.process.wait(timeout=60) == 0
    serving.read_until("SIGINT, draining in-flight requests")
    serving.read_until("successfully unloaded 'classify'")


def tritonserver_of(serving: Serving) -> int:
    (tritonserver,) = psutil.Process(serving.process.pid).children()
    return tritonserver.pid


def test_serve_restarts_tritonserver_when_a_python_stub_dies(serving: Serving, images) -> None:
    serving.read_until("tricolor ready")
    victim = next(
        stub for stub in python_stubs(tritonserver_of(serving)) if stub.model == "resnet50"
    )
    os.kill(victim.pid, signal.SIGKILL)
    lines = serving.read_until("tricolor ready")
    # Triton 2.51 either keeps running without the stub or aborts with it: both are named
    assert any(f"{victim.model} (pid {victim.pid})" in line for line in lines), lines[-30:]
    with TricolorClient(f"127.0.0.1:{serving.ports.grpc}") as client:
        assert client.classify_one(images[0].read_bytes(), images[0].name).error is None
    serving.process.send_signal(signal.SIGTERM)
    assert serving.process.wait(timeout=60) == 0


def test_serve_restarts_tritonserver_when_it_dies(serving: Serving, images) -> None:
    serving.read_until("tricolor ready")
    os.kill(tritonserver_of(serving), signal.SIGKILL)
    lines = serving.read_until("tricolor ready")
    assert any("tritonserver exited with code -9" in line for line in lines), lines[-30:]
    with TricolorClient(f"127.0.0.1:{serving.ports.grpc}") as client:
        assert client.classify_one(images[0].read_bytes(), images[0].name).error is None
    serving.process.send_signal(signal.SIGTERM)
    assert serving.process.wait(timeout=60) == 0
