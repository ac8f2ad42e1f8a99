"""`tricolor serve`: the server in the foreground, restarted when a Python-backend stub dies.

Works around two Triton 2.51 behaviours when a Python-backend stub dies. Usually the server
does not restart it: its model keeps claiming to be ready while every request routed to it
fails ("Stub process ... is not healthy"). Sometimes, when the stub died holding the shared
memory lock, tritonserver itself aborts (`boost::interprocess::lock_exception`). So with model
control off the launcher watches the stubs, and restarts the server in either case.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from tricolor.launcher.errors import LauncherError
from tricolor.launcher.process import ServerOptions, TritonServer

STUB_CHECK_INTERVAL_S = 1.0
# a server that keeps dying is not restarted for ever: at most this many restarts per window
MAX_RESTARTS, RESTART_WINDOW_S = 5, 600.0
STUB_EXECUTABLE = "triton_python_backend_stub"
# what Triton 2.51 logs at error level on a host without a GPU, even with --model-config-name=cpu
CUDA_PROBE_LINES = ("CudaDriverHelper has not been initialized", "unable to create stream for")


@dataclass(frozen=True)
class Stub:
    """A Python-backend stub process: one per model instance, started by tritonserver."""

    pid: int
    model: str


def python_stubs(server_pid: int) -> list[Stub]:
    """The live (not zombie) stub processes among the tritonserver's children.

    The model is the one whose `model.py` the stub was started with (its first argument,
    `<repository>/<model>/<version>/model.py`).
    """
    try:
        children = psutil.Process(server_pid).children()
    except psutil.NoSuchProcess:  # the server itself is gone: so are its stubs
        return []
    stubs = []
    for child in children:
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            arguments = child.cmdline()
        except psutil.Error:  # gone meanwhile
            continue
        if arguments and Path(arguments[0]).name == STUB_EXECUTABLE and len(arguments) > 1:
            stubs.append(Stub(child.pid, Path(arguments[1]).parent.parent.name))
    return stubs


def _watch_set(server: TritonServer) -> tuple[dict[int, str], list[str]]:
    """The stubs to watch, by PID, and what is already missing: taken before "ready" is
    announced, so a stub that dies at any moment after readiness is noticed."""
    assert server.process is not None
    expected = server.python_instance_count()
    watched = {stub.pid: stub.model for stub in python_stubs(server.process.pid)}
    missing = expected - len(watched)
    return watched, [f"{missing} of {expected} (gone before it was ready)"] if missing > 0 else []


def _lost_stubs(server: TritonServer, watched: dict[int, str]) -> list[str]:
    """Watched stubs that are gone, by PID: one that died stays lost even if another starts."""
    assert server.process is not None
    alive = {stub.pid for stub in python_stubs(server.process.pid)}
    return [f"{model} (pid {pid})" for pid, model in watched.items() if pid not in alive]


def serve(options: ServerOptions) -> int:
    """Run in the foreground until Ctrl-C / SIGTERM; Triton's log goes to the terminal.

    The first signal drains in-flight requests, then stops Triton; a second one stops it now.
    """
    server = TritonServer(options)
    signals: list[int] = []

    def request_stop(signum: int, _frame: object) -> None:
        signals.append(signum)
        if len(signals) > 1 and server.process is not None and server.process.poll() is None:
            print("\ntricolor: stopping tritonserver now", flush=True)
            server.process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    watch_stubs = options.model_control == "none"
    restarts: list[float] = []
    while not signals:
        try:
            server.start()
            server.wait_ready(interrupted=lambda: bool(signals))
            watched, lost = _watch_set(server) if watch_stubs and not signals else ({}, [])
        except (LauncherError, OSError) as exc:
            print(f"tricolor: {exc}", file=sys.stderr, flush=True)
            server.stop(drain=False)
            return 1
        if signals:
            break
        if not lost:
            print(ready_banner(server, options), flush=True)
        assert server.process is not None
        while not signals and not lost and server.process.poll() is None:
            time.sleep(STUB_CHECK_INTERVAL_S)
            if watch_stubs:
                lost = _lost_stubs(server, watched)
        exited = server.process.poll()
        if signals or not watch_stubs or (not lost and exited is None):
            break
        stubs = f"Python-backend stub(s) {', '.join(lost)}"
        if exited is None:
            reason = f"{stubs} died and Triton does not restart them"
        else:
            gone = f", and with it {stubs}" if lost else ""
            reason = f"tritonserver exited with code {exited} (its log above says why){gone}"
        restarts = [when for when in restarts if time.monotonic() - when < RESTART_WINDOW_S]
        if len(restarts) >= MAX_RESTARTS:
            print(
                f"\ntricolor: {reason}, {MAX_RESTARTS} times in {RESTART_WINDOW_S:.0f} s: "
                "giving up",
                file=sys.stderr,
                flush=True,
            )
            server.stop(drain=False)
            return 1
        restarts.append(time.monotonic())
        print(f"\ntricolor: {reason}: restarting tritonserver", flush=True)
        server.stop(drain=False)
    if not signals:
        return server.process.returncode if server.process is not None else 1
    print(
        f"\ntricolor: {signal.Signals(signals[0]).name}, draining in-flight requests "
        "(again to stop now), then stopping tritonserver",
        flush=True,
    )
    return_code = server.stop()
    return 0 if return_code in (0, -signal.SIGTERM, None) else 1


def console_script() -> str:
    """How to run `tricolor` from here: this venv's script (`.venv/bin/tricolor` from the
    repository root, as the README writes it), else plain `tricolor`."""
    script = Path(sys.executable).parent / "tricolor"
    if not script.exists():
        return "tricolor"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def ready_banner(server: TritonServer, options: ServerOptions) -> str:
    exposure = (
        "  bound to loopback only; `--host 0.0.0.0` exposes it to the network\n"
        if options.address in ("127.0.0.1", "localhost", "::1")
        else f"  listening on {options.address}: reachable from the network\n"
    )
    cuda_note = (
        "  Triton probes CUDA even on the CPU path: its error lines "
        + " / ".join(f'"{line} ..."' for line in CUDA_PROBE_LINES)
        + " above are expected on a host without a GPU and harmless\n"
        if options.config_name == "cpu" and not Path("/dev/nvidiactl").exists()
        else ""
    )
    return (
        f"\ntricolor ready: HTTP http://{server.http_url}  gRPC {server.grpc_url}  "
        f"metrics {server.metrics_url}\n"
        f"  try: {console_script()} classify --url {server.grpc_url} IMAGE\n" + exposure + cuda_note
    )
