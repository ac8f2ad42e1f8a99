"""Our own failures are INTERNAL errors, logged with their traceback, never counted or reported
as a bad image; the input's faults stay INVALID_ARG. A server of its own, on a copy of the
repository with two faults of ours: a labels file one class short (postprocess) and a bug
injected into tricolor.imaging's resize path for one image shape (preprocess)."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from tests.helpers import ARTIFACTS, encode, infer, scrape, start_server
from tricolor.launcher import TritonServer
from tricolor.settings import MODEL_REPOSITORY

pytestmark = pytest.mark.integration

FAULTY_SIZE = (464, 232)  # what a 2:1 image is resized to before its thumbnail
INJECTED_BUG = f"""
from tricolor import imaging

_shrink_to = imaging.shrink_to


def _shrink_to_with_a_bug(image, long_side):
    if image.size == {FAULTY_SIZE}:
        raise ZeroDivisionError("a bug of ours, injected by tests/test_internal_errors.py")
    return _shrink_to(image, long_side)


imaging.shrink_to = _shrink_to_with_a_bug
"""
COUNTER_DEADLINE_S = 30


@pytest.fixture(scope="module")
def faulty_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    repository = tmp_path_factory.mktemp("faulty") / "model_repository"
    shutil.copytree(MODEL_REPOSITORY, repository, ignore=shutil.ignore_patterns("*.onnx"))
    onnx = Path("resnet50", "1", "model.onnx")
    (repository / onnx).symlink_to(MODEL_REPOSITORY / onnx)
    labels = repository / "postprocess" / "labels.txt"
    labels.write_text("\n".join(labels.read_text().splitlines()[:-1]) + "\n")
    model = repository / "preprocess" / "1" / "model.py"
    model.write_text(model.read_text() + INJECTED_BUG)
    running = start_server("tritonserver-internal-errors.log", model_repository=repository)
    yield running
    running.stop(drain=False)


def image(width: int, height: int) -> bytes:
    return encode(Image.new("RGB", (width, height), "#FF8000"), "PNG")


def refusal(server: TritonServer, data: bytes) -> InferenceServerException:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        with pytest.raises(InferenceServerException) as raised:
            infer(client, grpcclient, [data])
    return raised.value


def wait_for(server: TritonServer, name: str, expected: float, **labels: str) -> None:
    deadline = time.monotonic() + COUNTER_DEADLINE_S
    while (seen := scrape(server, name, **labels)) != expected:
        assert time.monotonic() < deadline, f"{name}{labels} is {seen}, expected {expected}"
        time.sleep(0.1)


def wait_for_log(path: Path, pattern: str, what: str) -> None:
    """Wait until the server's log matches `pattern` (the stub's log lines arrive through
    tritonserver, just after the response)."""
    deadline = time.monotonic() + COUNTER_DEADLINE_S
    while not re.search(pattern, path.read_text(errors="replace")):
        assert time.monotonic() < deadline, f"{what} is not in {path.name}"
        time.sleep(0.1)


def test_our_failures_are_internal_and_not_counted_as_refusals(faulty_server) -> None:
    refused_before = scrape(faulty_server, "tricolor_rejected_images_total")

    bug = refusal(faulty_server, image(400, 200))
    assert bug.status() == "StatusCode.INTERNAL", bug.message()
    assert "internal error: preprocess failed on row 0" in bug.message()

    mismatch = refusal(faulty_server, image(300, 300))
    assert mismatch.status() == "StatusCode.INTERNAL", mismatch.message()
    assert "labels file has 999" in mismatch.message()

    bad_input = refusal(faulty_server, b"not an image")
    assert bad_input.status() == "StatusCode.INVALID_ARGUMENT", bad_input.message()
    # the one real refusal is counted, exactly; the two failures of ours are not
    wait_for(faulty_server, "tricolor_rejected_images_total", refused_before + 1)
    assert faulty_server.is_ready()
    # each fault of ours is in the server log: the bug with its traceback (the frame that
    # raised, then the exception), the mismatch with what to do about it
    log_path = ARTIFACTS / "tritonserver-internal-errors.log"
    for what, logged in [
        (
            "the injected bug's traceback",
            # Triton writes the stub's multi-line message on one line, newlines as "\n"
            r"in _shrink_to_with_a_bug\\n.*\\nZeroDivisionError: a bug of ours",
        ),
        ("the labels mismatch", r"resnet50 returned 1000 classes but the labels file has 999"),
    ]:
        wait_for_log(log_path, logged, what)
