"""Faults on dedicated servers (never the session one): a Python-backend stub killed under
load, and SIGTERM under load. Clients get answers or clear errors within a bound, never a
hang; the server comes back to ready, or drains and exits.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import tritonclient.grpc as grpcclient

from tests.helpers import ARTIFACTS, generated_images, start_server, stub_processes, wait_for
from tricolor.client import Classification, TricolorClient
from tricolor.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

BOUND_S = 30.0  # client timeout: an answer or an error must come before it
# the drain test's bound: its 90 rows run one after another on 2 cores, which a machine busy
# with other work (two suites beside it) stretched past 30 s; a hang bound, not a timing check
DRAIN_BOUND_S = 120.0
# what Triton 2.51 dies with when a stub is killed holding the shared-memory lock
TRITON_ABORT = "boost::interprocess::lock_exception"


class Load:
    """`threads` requests kept in flight until `stop()`; every outcome, in completion order."""

    def __init__(self, url: str, threads: int = 6) -> None:
        self._url = url
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._outcomes: list[Classification] = []
        self._pool = ThreadPoolExecutor(max_workers=threads)
        self._workers = [self._pool.submit(self._worker, index) for index in range(threads)]

    def _worker(self, index: int) -> None:
        images = list(generated_images().values())
        with TricolorClient(self._url, timeout_s=BOUND_S) as client:
            while not self._stopping.is_set():
                result = client.classify_one(images[index % len(images)], str(index))
                with self._lock:
                    self._outcomes.append(result)
                index += 1

    def outcomes(self) -> list[Classification]:
        with self._lock:
            return list(self._outcomes)

    def stop(self) -> list[Classification]:
        self._stopping.set()
        for worker in self._workers:
            worker.result(timeout=BOUND_S + 30)  # each finishes its request, or times out
        self._pool.shutdown()
        return self.outcomes()


@pytest.fixture
def fault_server(request):
    """A server of its own per fault, with model control on for the recovery path (reload).

    The version whose stub was killed never finishes unloading, so Triton's exit waits out
    its whole exit timeout: 5 s here instead of 30."""
    running = start_server(
        f"tritonserver-faults-{request.node.callspec.id}.log",
        model_control="explicit",
        exit_timeout_s=5,
    )
    yield running
    running.stop(drain=False)


def reload(server, model: str) -> None:
    """Unload and load again: a plain reload keeps unchanged instances, dead stub included."""
    with grpcclient.InferenceServerClient(server.grpc_url) as control:
        control.unload_model(model)
        wait_for(lambda: control.is_model_ready(model), lambda ready: not ready, f"{model} gone")
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
    load = Load(fault_server.grpc_url)
    try:
        # answers are coming; then the load goes on until requests to the dead instance fail
        wait_for(load.outcomes, lambda seen: len(seen) >= 12, "12 answers before the kill")
        os.kill(victims[0], signal.SIGKILL)
        wait_for(
            load.outcomes,
            lambda seen: sum(result.error is not None for result in seen) >= 6,
            f"6 failed requests after killing the {model} stub",
        )
    finally:
        outcomes = load.stop()
    errors = [result.error for result in outcomes if result.error is not None]
    answered = len(outcomes) - len(errors)
    report = f"{model}: {answered} answered, {len(errors)} errors: {sorted(set(errors))[:5]}"
    (ARTIFACTS / f"faults-kill-{model}.txt").write_text(report + "\n")
    assert answered >= 12 and errors, report
    assert all(result.latency_ms < BOUND_S * 1e3 for result in outcomes), report  # no hang
    log = (ARTIFACTS / f"tritonserver-faults-{model}.log").read_text(errors="replace")
    if fault_server.process.poll() is not None and TRITON_ABORT in log:
        # the other outcome in Triton 2.51: a stub killed while it held the shared-memory lock
        # takes tritonserver down with it (`tricolor serve` restarts it: test_cli.py)
        pytest.xfail(f"tritonserver aborted ({TRITON_ABORT}) when the stub died; {report}")
    assert all("Stub process" in error and "is not healthy" in error for error in errors), report
    with TricolorClient(fault_server.grpc_url, timeout_s=BOUND_S) as client:
        assert client.is_ready()  # the server stays up (and, in 2.51, claims the model ready)
        reload(fault_server, model)
        assert victims[0] not in stub_processes(fault_server)
        # the previous version finishes unloading in the background: recovery within a bound
        wait_for(
            lambda: [
                result.error
                for result in client.classify_many(
                    [generated_images()["generated_250x250.bmp"]] * 6, [str(i) for i in range(6)]
                )
                if result.error is not None
            ],
            lambda errors: not errors,
            f"six requests answered after reloading {model}",
        )
        assert client.is_ready()


def test_sigterm_under_load_drains_in_flight_requests_then_exits() -> None:
    """Triton's own SIGTERM refuses the next step of an in-flight ensemble request, so the
    launcher drains first (no request queued or executing in any model), then signals."""
    server = start_server("tritonserver-sigterm.log", exit_timeout_s=int(DRAIN_BOUND_S))
    try:
        images = list(generated_images().values())
        batch = images * 3  # 15 rows a request: each takes a while on a small CPU
        with (
            TricolorClient(server.grpc_url, timeout_s=DRAIN_BOUND_S) as client,
            ThreadPoolExecutor(max_workers=8) as pool,
        ):
            client.classify_one(images[0], "warm-up")
            before = client.inference_statistics(["preprocess"])["preprocess"]
            in_flight = [
                pool.submit(client.classify_batch, batch, [str(i) for i in range(15)])
                for _ in range(6)
            ]
            # all six are inside the server once preprocess has decoded them; resnet50 has
            # their 90 rows still to run
            wait_for(
                lambda: client.inference_statistics(["preprocess"])["preprocess"] - before,
                lambda delta: delta.requests >= 6,
                "preprocess taking all six requests",
            )
            assert not all(future.done() for future in in_flight), "nothing left to drain"
            stopping = pool.submit(server.stop)
            answers = [future.result(timeout=DRAIN_BOUND_S) for future in in_flight]
            # the drain (at most exit_timeout_s), then Triton's own exit
            return_code = stopping.result(timeout=2 * DRAIN_BOUND_S)
        assert [len(answer) for answer in answers] == [15] * 6
        assert all(result.error is None for answer in answers for result in answer)
        assert return_code == 0, return_code
        (ARTIFACTS / "faults-sigterm.txt").write_text(
            f"6 in-flight requests of 15 images each all answered; exit {return_code}\n"
        )
    finally:
        server.stop(drain=False)


SOAK_BOUND_MIB = 64
# the report's memory table: | process | after warm-up | end | peak | growth |
SOAK_MEMORY_ROW = re.compile(
    r"^\| (\S+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([+-][\d.]+) \|$", re.MULTILINE
)


def test_soak_script_smoke(tmp_path) -> None:
    """perf/studies/soak.py end to end, briefly (the real run is ~3 minutes: its SOAK.md). Its own
    PASS would also hold with no traffic answered or no process measured: the counts and the
    memory table are checked here."""
    out = tmp_path / "SOAK.md"
    command = [
        sys.executable,
        str(PROJECT_ROOT / "perf" / "studies" / "soak.py"),
        *("--duration", "6", "--warmup", "3", "--concurrency", "4"),
        *("--bound-mib", str(SOAK_BOUND_MIB), "--out", str(out)),
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    report = out.read_text()
    counts = {
        kind: int(value)
        for kind, value in re.findall(
            r"(good answered|good failed|bad refused|bad answered)\s+\**(\d+)", report
        )
    }
    assert counts.keys() == {"good answered", "good failed", "bad refused", "bad answered"}, report
    assert counts["good answered"] > 0 and counts["bad refused"] > 0, counts
    assert counts["good failed"] == 0 and counts["bad answered"] == 0, counts
    assert "Server ready at the end: True" in report, report
    rows = SOAK_MEMORY_ROW.findall(report)
    memory = {row[0]: [float(value) for value in row[1:]] for row in rows}
    measured = {re.sub(r"\[\d+\]$", "", name) for name in memory}  # preprocess[pid]
    assert measured == {"tritonserver", "preprocess", "resnet50", "postprocess"}, report
    for name, (after_warmup, end, peak, growth) in memory.items():
        assert 0 < after_warmup and 0 < end <= peak, (name, memory[name])
        assert growth <= SOAK_BOUND_MIB, (name, memory[name])
    assert "Result: PASS" in report, report
