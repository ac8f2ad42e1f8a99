"""One `tritonserver` process on given ports: start, wait for readiness, drain, stop."""

from __future__ import annotations

import ctypes
import errno
import json
import os
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
from typing import Any

from tricolor.launcher.errors import LauncherError
from tricolor.launcher.installation import TritonInstallation, find_installation
from tricolor.launcher.metrics import metric_sum
from tricolor.settings import DEFAULT_BIND_ADDRESS, MODEL_REPOSITORY, Ports, free_ports

# the metrics whose sum is the number of requests queued or executing (see `drain`)
IN_FLIGHT_METRICS = ("nv_inference_pending_request_count", "tricolor_executing_requests")
DRAIN_IDLE_POLLS = 3
PR_SET_PDEATHSIG = 1


def _terminate_with_parent() -> None:
    """In the child: SIGTERM when the thread that started it dies, so Triton is never orphaned.

    (Linux `prctl(PR_SET_PDEATHSIG)`; start servers from a thread that outlives them.)
    """
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


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
        if opts.config_name == "cpu":
            # no pinned (CUDA host) memory pool to try and fail to allocate on a CPU host
            command.append("--pinned-memory-pool-byte-size=0")
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
        installation = find_installation(opts.prefer)
        self.process = subprocess.Popen(
            self.command(installation),
            env=self.environment(installation),
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=_terminate_with_parent,
        )

    def _get(self, path: str, data: bytes | None = None) -> Any:
        """JSON from the HTTP endpoint (POST when `data` is given); raises `OSError`."""
        url = f"http://{self.http_url}{path}"
        with urllib.request.urlopen(url, data=data, timeout=5) as response:
            return json.loads(response.read() or b"null")

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

    def python_instance_count(self) -> int:
        """Python-backend model instances of the loaded models: one stub process each."""
        index = self._get("/v2/repository/index", data=b"{}")
        count = 0
        for model in index:
            if model.get("state") != "READY":
                continue
            config = self._get(f"/v2/models/{model['name']}/config")
            if config.get("backend") == "python":
                count += sum(int(group.get("count", 1)) for group in config["instance_group"])
        return count

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

        Works around Triton 2.51's SIGTERM, which refuses the next step of an ensemble request
        already in flight (each step is a new request to the composing model): the launcher
        lets them finish first.
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
