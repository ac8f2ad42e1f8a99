"""Faults on dedicated servers (never the session one): a Python-backend stub killed under
load, and SIGTERM under load. Clients get answers or clear errors within a bound, never a
hang; the server comes back to ready, or drains and exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import tritonclient.grpc as grpcclient

from tricolor.client import Classification, TricolorClient
from tricolor.settings import PROJECT_ROOT

from conftest import ARTIFACTS, generated_images, start_server, stub_processes

pytestmark = pytest.mark.integration

BOUND_S = 30.0  # client timeout: an answer or an error must come before it


def load(url: str, stop: threading.Event, threads: int = 6) -> list[Classification]:
    """Keep `threads` requests in flight until `stop`; every outcome, in completion order."""
    images = list(generated_images().values())
    outcomes: list[Classification] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        with TricolorClient(url, timeout_s=BOUND_S) as client:
            while not stop.is_set():
                result = client.classify_one(images[index % len(images)], str(index))
                with lock:
                    outcomes.append(result)
                index += 1

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(worker, index) for index in range(threads)]:
            future.result()
    return outcomes


@pytest.fixture
def fault_server(request):
    """A server of its own per fault, with model control on for the recovery path (reload)."""
    running = start_server(
        f"tritonserver-faults-{request.node.callspec.id}.log", model_control="explicit"
    )
    yield running
    running.stop(drain=False)


def reload(server, model: str) -> None:
    """Unload and load again: a plain reload keeps unchanged instances, dead stub included."""
    with grpcclient.InferenceServerClient(server.grpc_url) as control:
        control.unload_model(model)
        deadline = time.monotonic() + BOUND_S
        while control.is_model_ready(model) and time.monotonic() < deadline:
            time.sleep(0.1)
        control.load_model(model)
        control.load_model("classify")


@pytest.mark.parametrize("model", ["resnet50", "preprocess"])
def test_stub_killed_under_load_errors_not_hangs_then_recovers(fault_server, model) -> None:
    """Triton 2.51's Python backend does not restart a dead stub (python_backend PR #360
    removed that; server issue #8604) and keeps reporting the model ready: every request
    routed to the dead instance fails at once with "Stub process '<instance>' is not
    healthy." Unloading and loading the model (model control on) starts fresh stubs;
    `tricolor serve` (model control off) restarts the server instead (test_cli.py)."""
    victims = [pid for pid, name in stub_processes(fault_server).items() if name == model]
    assert victims, f"no {model} stub"
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as runner:
        running = runner.submit(load, fault_server.grpc_url, stop)
        time.sleep(2.0)  # load is steady
        os.kill(victims[0], signal.SIGKILL)
        time.sleep(4.0)  # load continues through the fault
        stop.set()
        outcomes = running.result(timeout=BOUND_S + 30)
    errors = [result.error for result in outcomes if result.error is not None]
    answered = len(outcomes) - len(errors)
    report = f"{model}: {answered} answered, {len(errors)} errors: {sorted(set(errors))[:5]}"
    (ARTIFACTS / f"faults-kill-{model}.txt").write_text(report + "\n")
    assert answered > 0 and errors, report
    assert all(result.latency_ms < BOUND_S * 1e3 for result in outcomes), report  # no hang
    assert all("Stub process" in error and "is not healthy" in error for error in errors), report
    with TricolorClient(fault_server.grpc_url, timeout_s=BOUND_S) as client:
        assert client.is_ready()  # the server stays up (and, in 2.51, claims the model ready)
        reload(fault_server, model)
        assert victims[0] not in stub_processes(fault_server)
        # the previous version finishes unloading in the background: recovery within a bound
        deadline, errors = time.monotonic() + BOUND_S, ["not tried"]
        while errors and time.monotonic() < deadline:
            results = client.classify_many(
                [generated_images()["generated_250x250.bmp"]] * 6, [str(i) for i in range(6)]
            )
            errors = [result.error for result in results if result.error is not None]
        assert not errors, errors
        assert client.is_ready()


def test_sigterm_under_load_drains_in_flight_requests_then_exits() -> None:
    """Triton's own SIGTERM refuses the next step of an in-flight ensemble request, so the
    launcher drains first (no request queued or executing in any model), then signals."""
    server = start_server("tritonserver-sigterm.log", exit_timeout_s=30)
    try:
        images = list(generated_images().values())
        batch = images * 3  # 15 rows a request: each takes a while on a small CPU
        with (
            TricolorClient(server.grpc_url, timeout_s=BOUND_S) as client,
            ThreadPoolExecutor(max_workers=8) as pool,
        ):
            client.classify_one(images[0], "warm-up")
            in_flight = [
                pool.submit(client.classify_batch, batch, [str(i) for i in range(15)])
                for _ in range(6)
            ]
            time.sleep(1.0)  # all are sent and queued or running
            assert not all(future.done() for future in in_flight)
            signalled = time.monotonic()
            stopping = pool.submit(server.stop)
            answers = [future.result(timeout=BOUND_S) for future in in_flight]
            return_code = stopping.result(timeout=60)
        assert [len(answer) for answer in answers] == [15] * 6
        assert all(result.error is None for answer in answers for result in answer)
        assert return_code == 0, return_code
        assert time.monotonic() - signalled < 45
        (ARTIFACTS / "faults-sigterm.txt").write_text(
            f"6 in-flight requests of 15 images each all answered; exit {return_code} "
            f"{time.monotonic() - signalled:.1f} s after the stop\n"
        )
    finally:
        server.stop(drain=False)


def test_soak_script_smoke(tmp_path) -> None:
    """perf/studies/soak.py end to end, briefly (the real run is ~3 minutes: its SOAK.md)."""
    out = tmp_path / "SOAK.md"
    command = [
        sys.executable,
        str(PROJECT_ROOT / "perf" / "studies" / "soak.py"),
        "--duration",
        "6",
        "--warmup",
        "3",
        "--concurrency",
        "4",
        "--out",
        str(out),
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    report = out.read_text()
    assert "good failed **0**" in report and "Result: PASS" in report
