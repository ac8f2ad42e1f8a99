"""The one tritonclient wrapper: send encoded images to `classify`, get typed results back.

Each image goes in its own request (concurrently), so a refused image costs nobody else
their answer and every result carries its own latency.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, astuple, dataclass, field, fields
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tricolor.contract import (
    COMPOSING_MODELS,
    IMAGE_INPUT,
    MODEL_NAME,
    OUTPUT_NAMES,
    OUTPUTS,
    Output,
)

if TYPE_CHECKING:
    import tritonclient.http as httpclient

PROTOCOLS = ("grpc", "http")
STAT_PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass
class Classification:
    """One image's answer, or `error` with the server's reason instead."""

    path: str
    labels: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    class_ids: list[int] = field(default_factory=list)
    color_rgb: str = ""
    color_ryb: str = ""
    color_rgb_name: str = ""
    color_ryb_name: str = ""
    # per palette colour, in palette order: the fraction of chromatic pixels nearest to it
    color_rgb_shares: list[float] = field(default_factory=list)
    color_ryb_shares: list[float] = field(default_factory=list)
    second_look: bool = False
    weights: str = ""
    latency_ms: float = 0.0
    error: str | None = None
    # with `error`: True when the server refused the image (bad input), False when there was
    # no answer at all (the server went away, timed out or failed)
    refused: bool = False

    def to_json(self) -> dict[str, Any]:
        """The CLI's `--json` element: `error` replaces the results of a refused image."""
        data = asdict(self)
        del data["refused"]
        if self.error is None:
            del data["error"]
            return data
        return {"path": self.path, "error": self.error, "latency_ms": self.latency_ms}


@dataclass(frozen=True)
class ModelTimes:
    """One model's cumulative counters from Triton's statistics API (all versions, in ns).

    `requests` and `success_ns` are successful requests and their total time in the server;
    the four phases split it. `executions` / `inferences` are model runs and the rows they
    carried (their ratio is the mean batch). Subtract two snapshots for the traffic between.
    """

    requests: int = 0
    success_ns: int = 0
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    executions: int = 0
    inferences: int = 0

    def __sub__(self, earlier: ModelTimes) -> ModelTimes:
        return ModelTimes(*(a - b for a, b in zip(astuple(self), astuple(earlier), strict=True)))


@dataclass(frozen=True)
class ModelState:
    """A model of the repository index: `state` is READY, UNAVAILABLE, ..."""

    name: str
    version: str
    state: str
    reason: str = ""


def _model_times(model_stats: list[dict[str, Any]]) -> ModelTimes:
    """Sum the statistics of every version; gRPC's JSON omits zeros and spells int64 as str."""
    totals = dict.fromkeys((field.name for field in fields(ModelTimes)), 0)
    for version in model_stats:
        stats = version.get("inference_stats", {})
        counts = {
            "requests": stats.get("success", {}).get("count", 0),
            "success_ns": stats.get("success", {}).get("ns", 0),
            "executions": version.get("execution_count", 0),
            "inferences": version.get("inference_count", 0),
            **{f"{phase}_ns": stats.get(phase, {}).get("ns", 0) for phase in STAT_PHASES},
        }
        for key, value in counts.items():
            totals[key] += int(value)
    return ModelTimes(**totals)


# Triton prefixes a composing model's error with the ensemble; preprocess names each bad row
_ENSEMBLE_PREFIX = re.compile(r"^in ensemble '[^']*', ")
_ROW = re.compile(r"(?:^|; )row (\d+): ")


def row_reasons(message: str) -> dict[int, str]:
    """The reason per refused row of a request, from the server's error message ({} if the
    message names no rows: then the request failed as a whole)."""
    text = _ENSEMBLE_PREFIX.sub("", message)
    parts = _ROW.split(text)  # ["", "0", "reason", "2", "reason", ...] when rows are named
    if len(parts) < 3 or parts[0]:
        return {}
    return {int(row): reason for row, reason in zip(parts[1::2], parts[2::2], strict=True)}


def is_refusal(exc: InferenceServerException) -> bool:
    """Whether the server refused the request's input (gRPC INVALID_ARGUMENT, HTTP 400), as
    opposed to failing or not answering."""
    return exc.status() in ("StatusCode.INVALID_ARGUMENT", "400")


def single_image_reason(message: str) -> str:
    """The server's reason for a one-image request, without the ensemble and row prefixes."""
    reasons = row_reasons(message)
    return reasons[0] if list(reasons) == [0] else _ENSEMBLE_PREFIX.sub("", message)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _value(output: Output, values: np.ndarray) -> Any:
    """One image's value of `output` as plain Python: a list for a listed output."""
    convert = {"BYTES": _text, "FP32": float, "INT32": int, "BOOL": bool}[output.datatype]
    return [convert(value) for value in values] if output.listed else convert(values[0])


def rows_to_classifications(
    outputs: dict[str, np.ndarray], paths: list[str], latency_ms: float
) -> list[Classification]:
    """Split a batched `classify` response into one `Classification` per row."""
    return [
        Classification(
            path=path,
            latency_ms=latency_ms,
            **{output.field: _value(output, outputs[output.name][row]) for output in OUTPUTS},
        )
        for row, path in enumerate(paths)
    ]


def image_input(images: list[bytes], module: ModuleType) -> Any:
    """The `IMAGE` input of `classify` / `preprocess` (tritonclient gRPC or HTTP `module`): one
    encoded image per row."""
    data = np.array(images, dtype=np.object_).reshape(-1, 1)
    tensor = module.InferInput(IMAGE_INPUT, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    return tensor


def http_module() -> ModuleType:
    """tritonclient's HTTP client, imported on first use: gRPC needs none of it, and its
    geventhttpclient has no wheel for Python 3.12 (the `http` extra installs it)."""
    try:
        import tritonclient.http as httpclient  # noqa: PLC0415
    except (ImportError, RuntimeError) as exc:  # tritonclient raises RuntimeError without gevent
        raise ImportError(
            f"HTTP needs tritonclient's HTTP client ({exc}): pip install 'tricolor[http]', "
            "or use gRPC (the default)"
        ) from exc
    return httpclient


class TricolorClient:
    """A `classify` client over gRPC (default) or HTTP; `url` is `host:port`."""

    def __init__(self, url: str, protocol: str = "grpc", timeout_s: float = 60.0) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
        self.url = url
        self.protocol = protocol
        self.timeout_s = timeout_s
        self._module = grpcclient if protocol == "grpc" else http_module()
        self._grpc = grpcclient.InferenceServerClient(url=url) if protocol == "grpc" else None
        self._per_thread = threading.local()
        self._http_clients: list[httpclient.InferenceServerClient] = []

    @property
    def _client(self) -> grpcclient.InferenceServerClient | httpclient.InferenceServerClient:
        """gRPC: one shared channel. HTTP: one client per thread (gevent is not thread-safe)."""
        if self._grpc is not None:
            return self._grpc
        client = getattr(self._per_thread, "http", None)
        if client is None:
            client = self._module.InferenceServerClient(
                url=self.url, network_timeout=self.timeout_s, connection_timeout=self.timeout_s
            )
            self._per_thread.http = client
            self._http_clients.append(client)
        return client

    def close(self) -> None:
        for client in [self._grpc, *self._http_clients]:
            if client is not None:
                client.close()

    def __enter__(self) -> TricolorClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready()) and bool(
                self._client.is_model_ready(MODEL_NAME)
            )
        except (InferenceServerException, ConnectionError, OSError):
            return False

    def _as_json(self) -> dict[str, Any]:
        """gRPC answers protobuf messages unless asked for JSON; HTTP always answers JSON."""
        return {"as_json": True} if self.protocol == "grpc" else {}

    def server_version(self) -> str:
        """Triton's version from the server metadata; raises if the server is unreachable."""
        return str(self._client.get_server_metadata(**self._as_json())["version"])

    def repository_index(self) -> list[ModelState]:
        """Every model of the repository with its version and state (loaded or not)."""
        index = self._client.get_model_repository_index(**self._as_json())
        models = index.get("models", []) if isinstance(index, dict) else index
        return [
            ModelState(
                name=model["name"],
                version=str(model.get("version", "")),
                state=model.get("state", ""),
                reason=model.get("reason", ""),
            )
            for model in models
        ]

    def model_config(self, name: str) -> dict[str, Any]:
        """The model's configuration as the server has it (its parameters, backend, ...)."""
        config = self._client.get_model_config(name, **self._as_json())
        return config.get("config", config)  # gRPC wraps it in {"config": ...}

    def inference_statistics(
        self, models: Iterable[str] = (MODEL_NAME, *COMPOSING_MODELS)
    ) -> dict[str, ModelTimes]:
        """Cumulative server-side times per model, from Triton's statistics API."""
        return {
            name: _model_times(
                self._client.get_inference_statistics(model_name=name, **self._as_json()).get(
                    "model_stats", []
                )
            )
            for name in models
        }

    def infer_batch(self, images: list[bytes]) -> dict[str, np.ndarray]:
        """All images as rows of one request; raises `InferenceServerException` if any is bad."""
        requested = [self._module.InferRequestedOutput(name) for name in OUTPUT_NAMES]
        kwargs: dict[str, Any] = {"outputs": requested}
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout_s
        result = self._client.infer(MODEL_NAME, [image_input(images, self._module)], **kwargs)
        return {name: result.as_numpy(name) for name in OUTPUT_NAMES}

    def classify_batch(self, images: list[bytes], paths: list[str]) -> list[Classification]:
        started = time.perf_counter()
        outputs = self.infer_batch(images)
        return rows_to_classifications(outputs, paths, (time.perf_counter() - started) * 1e3)

    def classify_one(self, image: bytes, path: str = "") -> Classification:
        started = time.perf_counter()
        try:
            return self.classify_batch([image], [path])[0]
        except InferenceServerException as exc:
            elapsed = (time.perf_counter() - started) * 1e3
            refused = is_refusal(exc)
            reason = single_image_reason(exc.message())
            return Classification(
                path=path,
                error=reason if refused else f"not answered: {reason}",
                latency_ms=elapsed,
                refused=refused,
            )
        except OSError as exc:  # HTTP: the connection itself failed (gRPC raises the above)
            elapsed = (time.perf_counter() - started) * 1e3
            return Classification(path=path, error=f"not answered: {exc}", latency_ms=elapsed)

    def classify_many(
        self, images: list[bytes], paths: list[str], concurrency: int = 4
    ) -> list[Classification]:
        """One request per image, `concurrency` in flight; results in input order."""
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            return list(pool.map(self.classify_one, images, paths))
