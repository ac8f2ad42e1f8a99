"""Shared fixtures: one real tritonserver per test session and real clients; the Hypothesis
profile every test session loads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from hypothesis import settings

from tests.helpers import start_server
from tricolor.client import TricolorClient
from tricolor.launcher import TritonServer

# the fuzz tests draw the same examples on every run and keep no example database, so a
# failure in CI is a failure on every machine; `pytest --hypothesis-profile=explore` draws new
# ones (a failure then prints the blob that reproduces it)
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
settings.load_profile("deterministic")


@pytest.fixture(scope="session")
def server() -> Iterator[TritonServer]:
    """The repository as users run it (`make serve`), shared by the whole session."""
    running = start_server("tritonserver.log")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(server: TritonServer) -> Iterator[TricolorClient]:
    with TricolorClient(server.grpc_url) as tricolor_client:
        yield tricolor_client


@pytest.fixture(scope="session")
def grpc_client(server: TritonServer) -> Iterator[grpcclient.InferenceServerClient]:
    raw = grpcclient.InferenceServerClient(server.grpc_url)
    yield raw
    raw.close()


@pytest.fixture(scope="session")
def http_client(server: TritonServer) -> Iterator[httpclient.InferenceServerClient]:
    raw = httpclient.InferenceServerClient(server.http_url, concurrency=8)
    yield raw
    raw.close()
