"""Start `tritonserver` on tricolor's model repository and wait until it is ready.

The embedded default is the binary that the `nvidia-pytriton` wheel ships (Triton 2.51.0 with
the Python backend), run with `--model-config-name=cpu`. A `tritonserver` on PATH (NVIDIA's
container) is used when the wheel is absent or when asked for.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tricolor.settings import (
    DEFAULT_BIND_ADDRESS,
    LOCAL_STATE_DIR,
    MODEL_REPOSITORY,
    Ports,
    free_ports,
)

# the metrics whose sum is the number of requests queued or executing (see `drain`)
IN_FLIGHT_METRICS = ("nv_inference_pending_request_count", "tricolor_executing_requests")
DRAIN_IDLE_POLLS = 3
STUB_CHECK_INTERVAL_S = 1.0
PR_SET_PDEATHSIG = 1


class LauncherError(RuntimeError):
    """The server could not be started; the message says why and what to do."""


@dataclass(frozen=True)
class TritonInstallation:
    """A `tritonserver` binary, the backends beside it and the environment it needs."""

    binary: Path
    backend_directory: Path
    library_path: list[Path] = field(default_factory=list)


def _terminate_with_parent() -> None:
    """In the child: SIGTERM when the thread that started it dies, so Triton is never orphaned.

    (Linux `prctl(PR_SET_PDEATHSIG)`; start servers from a thread that outlives them.)
    """
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _pytriton_root() -> Path | None:
    try:
        import pytriton  # noqa: PLC0415 (optional: only the embedded mode needs it)
    except ImportError:
        return None
    return Path(pytriton.__file__).resolve().parent


def embedded_installation(state_dir: Path = LOCAL_STATE_DIR) -> TritonInstallation | None:
    """The wheel's `tritonserver`, with a backend directory holding the stub for this Python.

    The wheel keeps one Python-backend stub per Python version; Triton looks for it beside
    `libtriton_python.so`, so the backend is copied once into `state_dir` with the right stub,
    as PyTriton itself does.
    """
    root = _pytriton_root()
    if root is None:
        return None
    server_dir = root / "tritonserver"
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server_dir / "python_backend_stubs" / python_version / "triton_python_backend_stub"
    if not stub.exists():
        raise LauncherError(f"nvidia-pytriton ships no Python-backend stub for {python_version}")
    backends = state_dir / "backends"
    python_backend = backends / "python"
    if not (python_backend / "triton_python_backend_stub").exists():
        staging = backends / f".python-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(server_dir / "backends" / "python", staging)
        shutil.copy2(stub, staging / "triton_python_backend_stub")
        shutil.rmtree(python_backend, ignore_errors=True)
        staging.rename(python_backend)
    return TritonInstallation(
        binary=server_dir / "bin" / "tritonserver",
        backend_directory=backends,
        library_path=[root.parent / "nvidia_pytriton.libs"],
    )


def system_installation() -> TritonInstallation | None:
    """A `tritonserver` on PATH, with the backends of NVIDIA's container layout."""
    found = shutil.which("tritonserver")
    if found is None:
        return None
    binary = Path(found).resolve()
    return TritonInstallation(binary=binary, backend_directory=binary.parent.parent / "backends")


def find_installation(prefer: str = "auto") -> TritonInstallation:
    """`embedded` (the wheel), `system` (PATH) or `auto` (embedded, else system)."""
    finders = {
        "embedded": [embedded_installation],
        "system": [system_installation],
        "auto": [embedded_installation, system_installation],
    }[prefer]
    for finder in finders:
        installation = finder()
        if installation is not None:
            return installation
    raise LauncherError(
        "no tritonserver found: run `make setup` (installs nvidia-pytriton into .venv) "
        "or put NVIDIA's tritonserver on PATH"
    )


def check_port_free(address: str, port: int, variable: str) -> None:
    """Fail clearly, before Triton does, when a port is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LauncherError(
                    f"port {port} on {address} is already in use ({variable}); stop what holds "
                    f"it (`ss -ltnp 'sport = :{port}'`) or choose another, e.g. "
                    f"{variable}={port + 100}"
                ) from exc
            raise LauncherError(f"cannot bind {address}:{port} ({variable}): {exc}") from exc


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the series of metric `name` (Prometheus text) whose labels include `labels`."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items())
    )


@dataclass(frozen=True)
class Stub:
    """A Python-backend stub process: one per model instance, started by tritonserver."""

    pid: int
    model: str
    instance: str  # e.g. preprocess_0_1


def python_stubs(server_pid: int) -> list[Stub]:
    """The live (not zombie) stub processes of the tritonserver with PID `server_pid`."""
    stubs = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields["PPid"]) != server_pid or fields["State"].strip().startswith("Z"):
            continue
        if arguments[0].endswith(b"triton_python_backend_stub") and len(arguments) > 9:
            model_file = Path(arguments[1].decode())  # <repository>/<model>/<version>/model.py
            stubs.append(
                Stub(int(entry.name), model_file.parent.parent.name, arguments[8].decode())
            )
    return stubs


@dataclass
class ServerOptions:
    ports: Ports = field(default_factory=Ports.from_env)
    address: str = DEFAULT_BIND_ADDRESS
    model_repository: Path = MODEL_REPOSITORY
    config_name: str | None = "cpu"
    model_control: str = "none"
    exit_timeout_s: int = 30
    log_verbose: int = 0
    prefer: str = "auto"
    extra_args: list[str] = field(default_factory=list)


class TritonServer:
    """One `tritonserver` process: start, wait for readiness, stop (SIGTERM, then SIGKILL)."""

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"{self._client_host}:{self.options.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self.options.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.options.ports.metrics}/metrics"

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.options.address in ("0.0.0.0", "") else self.options.address

    def command(self, installation: TritonInstallation) -> list[str]:
        opts = self.options
        command = [
            str(installation.binary),
            f"--model-repository={opts.model_repository}",
            f"--backend-directory={installation.backend_directory}",
            f"--http-address={opts.address}",
            f"--grpc-address={opts.address}",
            f"--metrics-address={opts.address}",
            f"--http-port={opts.ports.http}",
            f"--grpc-port={opts.ports.grpc}",
            f"--metrics-port={opts.ports.metrics}",
            f"--model-control-mode={opts.model_control}",
            f"--exit-timeout-secs={opts.exit_timeout_s}",
            f"--log-verbose={opts.log_verbose}",
            "--allow-gpu-metrics=false",
        ]
        if opts.model_control == "explicit":
            command.append("--load-model=*")
        if opts.config_name:
            command.append(f"--model-config-name={opts.config_name}")
        return command + opts.extra_args

    def environment(self, installation: TritonInstallation) -> dict[str, str]:
        """PATH starts with this interpreter's `bin`: the stub finds numpy & co. through it."""
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        libraries = [str(path) for path in installation.library_path if path.exists()]
        if libraries:
            env["LD_LIBRARY_PATH"] = os.pathsep.join([*libraries, env.get("LD_LIBRARY_PATH", "")])
        return env

    def start(self, stdout: int | None = None, stderr: int | None = None) -> None:
        opts = self.options
        for port, variable in (
            (opts.ports.http, "HTTP_PORT"),
            (opts.ports.grpc, "GRPC_PORT"),
            (opts.ports.metrics, "METRICS_PORT"),
        ):
            check_port_free(opts.address, port, variable)
        onnx_model = opts.model_repository / "resnet50" / "1" / "model.onnx"
        if opts.config_name == "cpu" and not onnx_model.exists():
            raise LauncherError(f"{onnx_model} is missing: run `make setup` to export it")
        installation = find_installation(opts.prefer)
        self.process = subprocess.Popen(
            self.command(installation),
            env=self.environment(installation),
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=_terminate_with_parent,
        )

    def is_ready(self) -> bool:
        try:
            url = f"http://{self.http_url}/v2/health/ready"
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(
        self, timeout_s: float = 180.0, interrupted: Callable[[], bool] = lambda: False
    ) -> None:
        """Poll readiness; stop early (without error) when `interrupted()` says so."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not interrupted():
            if self.process is not None and self.process.poll() is not None:
                raise LauncherError(
                    f"tritonserver exited with code {self.process.returncode} before it was "
                    "ready; its log above says why"
                )
            if self.is_ready():
                return
            time.sleep(0.25)
        if not interrupted():
            raise LauncherError(f"tritonserver was not ready after {timeout_s:.0f} s")

    def metrics_text(self) -> str:
        """The metrics endpoint's Prometheus text; raises `OSError` when it cannot be read."""
        with urllib.request.urlopen(self.metrics_url, timeout=2) as response:
            return response.read().decode()

    def requests_in_flight(self) -> int | None:
        """Requests queued at or executing in any model; None when metrics cannot be read.

        Triton's `nv_inference_pending_request_count` covers the queues, tricolor's
        `tricolor_executing_requests` gauge (each Python model's `execute`) the rest.
        """
        try:
            text = self.metrics_text()
        except OSError:  # urllib's URLError included
            return None
        return int(sum(metric_sum(text, name) for name in IN_FLIGHT_METRICS))

    def drain(self, timeout_s: float) -> bool:
        """Wait until no request is queued or executing anywhere, at most `timeout_s`.

        Triton's own SIGTERM refuses the next step of an in-flight ensemble request (it is a
        new request to the composing model), so the launcher lets them finish first.
        """
        deadline = time.monotonic() + timeout_s
        idle_polls = 0
        while time.monotonic() < deadline and self.process is not None:
            if self.process.poll() is not None:
                return True
            in_flight = self.requests_in_flight()
            if in_flight is None:
                return False
            # idle on consecutive polls: a request between two ensemble steps is in neither
            idle_polls = idle_polls + 1 if in_flight == 0 else 0
            if idle_polls >= DRAIN_IDLE_POLLS:
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout_s: float | None = None, drain: bool = True) -> int | None:
        """Drain in-flight requests, SIGTERM, then SIGKILL if it outlives the grace."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        if drain:
            self.drain(self.options.exit_timeout_s)
        grace = timeout_s if timeout_s is not None else self.options.exit_timeout_s + 15
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def __enter__(self) -> TritonServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_on_free_ports(log: Path, timeout_s: float = 180.0, **options: object) -> TritonServer:
    """A ready tritonserver on free loopback ports, its output in `log` (tests, benchmarks)."""
    server = TritonServer(ServerOptions(ports=Ports(*free_ports(3)), **options))
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as handle:  # the child keeps its own descriptor
        server.start(stdout=handle, stderr=subprocess.STDOUT)
    try:
        server.wait_ready(timeout_s)
    except BaseException:
        server.stop(drain=False)
        raise
    return server


def serve(options: ServerOptions) -> int:
    """Run in the foreground until Ctrl-C / SIGTERM; Triton's log goes to the terminal.

    The first signal drains in-flight requests, then stops Triton; a second one stops it now.
    Triton 2.51 does not restart a Python-backend stub that dies (its model keeps claiming
    to be ready while every request routed to it fails), so with model control off the
    launcher watches the stubs and restarts the server when one is gone.
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
    while not signals:
        try:
            server.start()
            server.wait_ready(interrupted=lambda: bool(signals))
        except LauncherError as exc:
            print(f"tricolor: {exc}", file=sys.stderr, flush=True)
            server.stop(drain=False)
            return 1
        if signals:
            break
        print(ready_banner(server, options.address), flush=True)
        assert server.process is not None
        # by PID: a stub that died stays lost even if something starts another in its place
        watched = {stub.pid: stub.instance for stub in python_stubs(server.process.pid)}
        lost: set[str] = set()
        while not signals and not lost and server.process.poll() is None:
            time.sleep(STUB_CHECK_INTERVAL_S)
            if watch_stubs:
                alive = {stub.pid for stub in python_stubs(server.process.pid)}
                lost = {instance for pid, instance in watched.items() if pid not in alive}
        if not lost:
            break
        print(
            f"\ntricolor: Python-backend stub(s) {', '.join(sorted(lost))} died and Triton does "
            "not restart them: restarting tritonserver",
            flush=True,
        )
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


def ready_banner(server: TritonServer, address: str) -> str:
    exposure = (
        "  bound to loopback only; `--host 0.0.0.0` exposes it to the network\n"
        if address in ("127.0.0.1", "localhost", "::1")
        else f"  listening on {address}: reachable from the network\n"
    )
    return (
        f"\ntricolor ready: HTTP http://{server.http_url}  gRPC {server.grpc_url}  "
        f"metrics {server.metrics_url}\n"
        f"  try: tricolor classify --url {server.grpc_url} IMAGE\n" + exposure
    )
