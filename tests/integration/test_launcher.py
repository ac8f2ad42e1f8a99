"""The launcher's supervision against a real tritonserver: what it watches, and when."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tricolor.launcher.supervision import _watch_set
from tricolor.settings import PROJECT_ROOT, free_ports

pytestmark = pytest.mark.integration

STUB_GONE_DEADLINE_S = 60
# two server starts on a loaded machine, then a drain
SERVE_DEADLINE_S = 300


def test_the_watch_set_counts_every_python_instance(server) -> None:
    watched, missing = _watch_set(server)
    assert missing == []
    # preprocess x 2, resnet50 x 1 (ONNX Runtime in Python on CPU), postprocess x 1
    assert sorted(watched.values()) == ["postprocess", "preprocess", "preprocess", "resnet50"]


# `serve()` as `tricolor serve` runs it, with a resnet50 stub killed (and gone) right after the
# first readiness and before serve() takes its watch set: the window of the launcher's old race
SERVE_WITH_A_STUB_KILLED_AT_READY = """
import os, signal, sys, time
from tricolor.launcher import python_stubs, supervision
from tricolor.launcher.process import ServerOptions
from tricolor.settings import Ports

wait_ready = supervision.TritonServer.wait_ready
killed = []


def wait_ready_then_kill_a_stub(server, *args, **kwargs):
    wait_ready(server, *args, **kwargs)
    if killed:
        return
    victim = next(s for s in python_stubs(server.process.pid) if s.model == "resnet50")
    os.kill(victim.pid, signal.SIGKILL)
    killed.append(victim)
    deadline = time.monotonic() + float(sys.argv[4])
    while victim in python_stubs(server.process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    print(f"test: killed resnet50 stub {victim.pid} after readiness", flush=True)


supervision.TritonServer.wait_ready = wait_ready_then_kill_a_stub
ports = Ports(*map(int, sys.argv[1:4]))
sys.exit(supervision.serve(ServerOptions(ports=ports)))
"""


def test_serve_restarts_once_without_a_ready_banner_when_a_stub_dies_before_it(
    tmp_path: Path,
) -> None:
    """The race the launcher once had, through serve() itself: a stub dying between readiness
    and the watch set. serve() must not announce that server, and restart it exactly once."""
    script = tmp_path / "serve_with_a_stub_killed.py"
    script.write_text(SERVE_WITH_A_STUB_KILLED_AT_READY)
    ports = free_ports(3)
    process = subprocess.Popen(
        [sys.executable, str(script), *map(str, ports), str(STUB_GONE_DEADLINE_S)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=PROJECT_ROOT,
    )
    lines: list[str] = []
    collector = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    collector.start()
    try:
        wait_for(
            lambda: sum("tricolor ready" in line for line in lines),
            lambda banners: banners >= 1 or process.poll() is not None,
            "serve() announcing the restarted server",
            timeout_s=SERVE_DEADLINE_S,
        )
        assert process.poll() is None, "".join(lines[-40:])
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=SERVE_DEADLINE_S) == 0, "".join(lines[-40:])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        collector.join(timeout=30)
        process.stdout.close()
    output = "".join(lines)
    killed = output.index("test: killed resnet50 stub")
    restarts = [line for line in lines if "restarting tritonserver" in line]
    assert len(restarts) == 1, restarts
    assert "gone before it was ready" in restarts[0], restarts
    restart = output.index("restarting tritonserver")
    # no banner for the server that lost its stub; exactly one for the restarted one
    assert "tricolor ready" not in output[:restart], output[killed:restart]
    assert output.count("tricolor ready") == 1, output[restart:][-3000:]
