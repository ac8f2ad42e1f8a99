"""`make demo` (ui/app.py --with-server) beside a server that already runs."""

from __future__ import annotations

import os
import subprocess

import pytest

from tricolor.settings import PROJECT_ROOT, free_ports

pytestmark = pytest.mark.integration

UI_PYTHON = PROJECT_ROOT / ".venv-ui" / "bin" / "python"


def test_demo_stops_when_a_server_already_answers(server) -> None:
    """It must not start its UI against a server it did not start (nor leave a stray one)."""
    (ui_port,) = free_ports(1)
    done = subprocess.run(
        [
            str(UI_PYTHON),
            str(PROJECT_ROOT / "ui" / "app.py"),
            "--with-server",
            str(PROJECT_ROOT / ".venv" / "bin" / "tricolor"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TRITON_URL": server.grpc_url, "UI_PORT": str(ui_port)},
    )
    assert done.returncode != 0, done.stdout
    assert f"a Triton server already answers at {server.grpc_url}" in done.stderr, done.stderr
    assert "Running on" not in done.stdout
