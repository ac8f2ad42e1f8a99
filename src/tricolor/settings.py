"""Where things are and which ports they use: one place for every default."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODEL_REPOSITORY = PROJECT_ROOT / "model_repository"
LOCAL_STATE_DIR = PROJECT_ROOT / ".tricolor"

DEFAULT_HTTP_PORT = 8000
DEFAULT_GRPC_PORT = 8001
DEFAULT_METRICS_PORT = 8002
DEFAULT_UI_PORT = 7860
DEFAULT_BIND_ADDRESS = "127.0.0.1"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise SystemExit(f"{name}={value!r} is not a port number") from exc


@dataclass(frozen=True)
class Ports:
    """The three ports Triton listens on."""

    http: int = DEFAULT_HTTP_PORT
    grpc: int = DEFAULT_GRPC_PORT
    metrics: int = DEFAULT_METRICS_PORT

    @classmethod
    def from_env(cls) -> Ports:
        return cls(
            http=_env_int("HTTP_PORT", DEFAULT_HTTP_PORT),
            grpc=_env_int("GRPC_PORT", DEFAULT_GRPC_PORT),
            metrics=_env_int("METRICS_PORT", DEFAULT_METRICS_PORT),
        )


def free_ports(count: int) -> list[int]:
    """`count` loopback ports that nothing listens on now (tests and benchmarks)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def ui_port() -> int:
    return _env_int("UI_PORT", DEFAULT_UI_PORT)


# where every client (CLI, UI, gpu-check) looks for the server: what default_triton_url does,
# in the words its error messages and the README use
SERVER_ADDRESS_RULE = (
    "--url HOST:PORT if given, else TRITON_URL (gRPC HOST:PORT; --protocol http uses its HOST "
    "with HTTP_PORT), else localhost on GRPC_PORT / HTTP_PORT (8001 / 8000, as `tricolor "
    "serve` binds them)"
)


def default_triton_url(protocol: str = "grpc") -> str:
    """`host:port` of the server a client talks to without `--url` (SERVER_ADDRESS_RULE)."""
    url = os.environ.get("TRITON_URL", "").strip()
    if protocol == "grpc":
        return url or f"localhost:{_env_int('GRPC_PORT', DEFAULT_GRPC_PORT)}"
    host = url.rsplit(":", 1)[0] if ":" in url else url
    return f"{host or 'localhost'}:{_env_int('HTTP_PORT', DEFAULT_HTTP_PORT)}"


def user_data_dir() -> Path:
    """Where tricolor keeps what a user made (the catalogue): `XDG_DATA_HOME`/tricolor.

    Not in the checkout's `.tricolor` (`make clean` empties that, and a pip-installed tricolor
    has no checkout).
    """
    base = os.environ.get("XDG_DATA_HOME", "").strip() or str(Path.home() / ".local" / "share")
    return Path(base) / "tricolor"


def catalogue_url() -> str:
    """The catalogue database: `TRICOLOR_DB` (any SQLAlchemy URL), else a SQLite file."""
    url = os.environ.get("TRICOLOR_DB", "").strip()
    return url or f"sqlite:///{user_data_dir() / 'catalogue.db'}"
