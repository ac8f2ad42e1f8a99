"""Which `tritonserver` runs, with the backends and libraries it needs.

The embedded default is the binary the `nvidia-pytriton` wheel ships (Triton 2.51.0 with the
Python backend); a `tritonserver` on PATH (NVIDIA's container) is used when the wheel is absent
or when asked for.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tricolor.launcher.errors import LauncherError
from tricolor.settings import LOCAL_STATE_DIR


@dataclass(frozen=True)
class TritonInstallation:
    """A `tritonserver` binary, the backends beside it and the libraries it loads."""

    binary: Path
    backend_directory: Path
    library_path: list[Path] = field(default_factory=list)


def _pytriton_root() -> Path | None:
    try:
        import pytriton  # noqa: PLC0415 (optional: only the embedded mode needs it)
    except ImportError:
        return None
    return Path(pytriton.__file__).resolve().parent


def embedded_installation(state_dir: Path = LOCAL_STATE_DIR) -> TritonInstallation | None:
    """The wheel's `tritonserver`, with a backend directory holding the stub for this Python.

    Works around the wheel's layout: it keeps one Python-backend stub per Python version under
    `python_backend_stubs/<X.Y>/`, while Triton looks for the stub beside
    `libtriton_python.so`. So the backend is copied once into `state_dir` with this Python's
    stub, as PyTriton itself does.
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
    raise LauncherError(not_found(prefer))


def not_found(prefer: str) -> str:
    """What to do when the mode asked for finds no tritonserver."""
    if prefer == "embedded":
        return (
            f"--tritonserver embedded: nvidia-pytriton is not installed for {sys.executable}; "
            "run `make setup` (installs it into .venv) and use .venv/bin/tricolor, or "
            "pip install 'tricolor[serve]'"
        )
    if prefer == "system":
        return (
            f"--tritonserver system: no `tritonserver` on PATH ({os.environ.get('PATH', '')}); "
            "in NVIDIA's Triton container it is /opt/tritonserver/bin/tritonserver "
            "(`export PATH=/opt/tritonserver/bin:$PATH`); elsewhere install Triton Inference "
            "Server, or leave out --tritonserver to run the embedded one"
        )
    return (
        "no tritonserver found: run `make setup` (installs nvidia-pytriton into .venv), "
        "pip install 'tricolor[serve]', or put NVIDIA's tritonserver on PATH"
    )
