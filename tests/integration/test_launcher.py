"""The launcher's supervision against a real tritonserver: what it watches, and when."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.helpers import ARTIFACTS
from tricolor.launcher import python_stubs, start_on_free_ports
from tricolor.launcher.supervision import _watch_set

pytestmark = pytest.mark.integration

STUB_GONE_DEADLINE_S = 60


def test_the_watch_set_counts_every_python_instance(server) -> None:
    watched, missing = _watch_set(server)
    assert missing == []
    # preprocess x 2, resnet50 x 1 (ONNX Runtime in Python on CPU), postprocess x 1
    assert sorted(watched.values()) == ["postprocess", "preprocess", "preprocess", "resnet50"]


def test_a_stub_that_dies_before_ready_is_announced_is_caught() -> None:
    """The race the launcher once had: a stub dying between readiness and the watch set."""
    server = start_on_free_ports(ARTIFACTS / "tritonserver-watch.log")
    try:
        victim = next(stub for stub in python_stubs(server.process.pid) if stub.model == "resnet50")
        os.kill(victim.pid, signal.SIGKILL)
        deadline = time.monotonic() + STUB_GONE_DEADLINE_S
        while victim in python_stubs(server.process.pid):
            assert time.monotonic() < deadline, f"stub {victim} still alive after SIGKILL"
            time.sleep(0.1)
        _, missing = _watch_set(server)
        assert missing == ["1 of 4 (gone before it was ready)"]
    finally:
        server.stop(drain=False)
