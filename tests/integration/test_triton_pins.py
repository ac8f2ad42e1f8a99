"""The models with exactly the Triton image's pins: `.venv-triton` (requirements-triton.txt,
the versions Dockerfile.triton installs, here for this machine's Python; `make test` builds it)
is the Python-backend stubs' `python3` while the embedded tritonserver serves the repository,
and the end-to-end parity and colour checks of test_classify run against that server.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from tests.helpers import ARTIFACTS, stub_processes
from tests.integration import test_classify as e2e
from tests.integration.test_classify import onnx_session, parity_images  # noqa: F401 (fixtures)
from tricolor.client import TricolorClient
from tricolor.colours import RGB_PALETTE, RYB_PALETTE
from tricolor.launcher import TritonInstallation, TritonServer
from tricolor.launcher.process import ServerOptions
from tricolor.settings import PROJECT_ROOT, Ports, free_ports

pytestmark = pytest.mark.integration

TRITON_VENV = PROJECT_ROOT / ".venv-triton"


class ImagePinnedServer(TritonServer):
    """The embedded tritonserver whose stubs find their packages in `.venv-triton`."""

    def environment(self, installation: TritonInstallation) -> dict[str, str]:
        env = super().environment(installation)
        env["PATH"] = os.pathsep.join([str(TRITON_VENV / "bin"), env["PATH"]])
        return env


@pytest.fixture(scope="module")
def pinned_server() -> Iterator[TritonServer]:
    if not (TRITON_VENV / ".installed").exists():
        pytest.fail(
            f"{TRITON_VENV} is missing: `make test` builds it (make .venv-triton/.installed)"
        )
    server = ImagePinnedServer(ServerOptions(ports=Ports(*free_ports(3))))
    log_path = ARTIFACTS / "tritonserver-image-pins.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        server.start(stdout=log, stderr=subprocess.STDOUT)
    try:
        server.wait_ready(180)
        yield server
    finally:
        server.stop(drain=False)


@pytest.fixture(scope="module")
def pinned_client(pinned_server: TritonServer) -> Iterator[TricolorClient]:
    with TricolorClient(pinned_server.grpc_url) as client:
        yield client


@pytest.fixture(scope="module")
def pinned_grpc_client(pinned_server: TritonServer) -> Iterator[grpcclient.InferenceServerClient]:
    raw = grpcclient.InferenceServerClient(pinned_server.grpc_url)
    yield raw
    raw.close()


def mapped_files(pid: int) -> set[str]:
    return {
        line.split(maxsplit=5)[5]
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
        if len(line.split(maxsplit=5)) == 6
    }


def test_the_stubs_run_the_triton_images_pins(pinned_server: TritonServer, pinned_client) -> None:
    assert pinned_client.is_ready()
    stubs = stub_processes(pinned_server)
    assert set(stubs.values()) >= {"preprocess", "resnet50", "postprocess"}, stubs
    site = str(TRITON_VENV / "lib")
    for pid, model in stubs.items():
        # Python packages only: the stub also maps the server's own libraries (the wheel's
        # nvidia_pytriton.libs, on LD_LIBRARY_PATH; NVIDIA's image has its own)
        packages = [
            path
            for path in mapped_files(pid)
            if "site-packages" in path and "/nvidia_pytriton.libs/" not in path
        ]
        numpy = [path for path in packages if "/numpy/" in path]
        assert numpy and all(path.startswith(site) for path in numpy), (model, numpy)
        foreign = [path for path in packages if not path.startswith(site)]
        assert foreign == [], (model, foreign[:5])


def test_preprocess_matches_torchvision_with_the_image_pins(
    pinned_grpc_client,
    parity_images,  # noqa: F811
) -> None:
    e2e.test_preprocess_matches_torchvision_reference(pinned_grpc_client, parity_images)


def test_scores_match_onnxruntime_with_the_image_pins(
    pinned_client,
    parity_images,  # noqa: F811
    onnx_session,  # noqa: F811
) -> None:
    e2e.test_served_scores_match_onnxruntime_on_reference_tensors(
        pinned_client, parity_images, onnx_session
    )


@pytest.mark.parametrize("palette", [RGB_PALETTE, RYB_PALETTE], ids=["rgb", "ryb"])
def test_colours_with_the_image_pins(pinned_client, palette) -> None:
    e2e.test_solid_palette_colours_are_their_own_dominant_colour(pinned_client, palette)
    e2e.test_striped_images_get_the_colour_the_rule_predicts(pinned_client)
