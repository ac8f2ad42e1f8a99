"""resnet50's TensorRT FP16 plan: build settings, provenance, staleness, the build itself.

A serialized TensorRT engine runs only on the TensorRT version and the GPU it was built for
(a foreign one fails to load with "Serialized Engine Version" or "device mismatch" errors), so
every plan has a provenance record beside it, and `plan_problem` decides from that record
whether a plan can be served here. The decisions are pure; the TensorRT calls are in
`build_plan`, which takes the `tensorrt` module as an argument (TensorRT 10: the FP16 builder
flag, one optimisation profile, `build_serialized_network`, a timing cache). Stdlib only: it
runs in NVIDIA's TensorRT image, in the Triton image's entrypoint and in the tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tricolor.model_config import read_model_config

PLAN_NAME = "model.plan"
RECORD_NAME = "model.plan.json"
TIMING_CACHE_NAME = "timing.cache"
LOG = logging.getLogger(__name__)
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
IMAGE_SHAPE = (3, 224, 224)
# batch TensorRT tunes its kernels for: the middle of resnet50's preferred batch sizes
# (16, 32, 64); ResNet-50 FP16 images/s level off between 32 and 64 on data-centre GPUs
OPT_BATCH = 32
WORKSPACE_BYTES = 2 << 30
PRECISION = "fp16"
TENSORRT_MAJOR = 10
# the resnet50 config variant served when the plan cannot be (configs/onnx-tensorrt.pbtxt)
FALLBACK_CONFIG = "onnx-tensorrt"


class NoGpuError(RuntimeError):
    """The GPU mode was asked for and no GPU is visible."""


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX or build the plan; the message lists why."""


@dataclass(frozen=True)
class BuildSettings:
    """Everything the build depends on besides the ONNX, TensorRT and the GPU."""

    max_batch: int
    opt_batch: int = OPT_BATCH
    min_batch: int = 1
    precision: str = PRECISION
    workspace_bytes: int = WORKSPACE_BYTES
    image_shape: tuple[int, int, int] = IMAGE_SHAPE

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"batch sizes must satisfy 1 <= min {self.min_batch} <= opt {self.opt_batch} "
                f"<= max {self.max_batch}"
            )
        if self.precision != PRECISION:
            raise ValueError(f"precision {self.precision!r}: only {PRECISION!r} is built")
        if self.workspace_bytes < 1 << 20:
            raise ValueError(f"workspace of {self.workspace_bytes} bytes is below 1 MiB")

    def profile(self) -> dict[str, tuple[int, ...]]:
        """The optimisation profile of `input`: min, opt and max shapes (NCHW)."""
        return {
            name: (batch, *self.image_shape)
            for name, batch in (
                ("min", self.min_batch),
                ("opt", self.opt_batch),
                ("max", self.max_batch),
            )
        }

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "image_shape": list(self.image_shape)}


def settings_from_config(
    config: Path, opt_batch: int = OPT_BATCH, **overrides: Any
) -> BuildSettings:
    """Build settings whose max batch is the served config's `max_batch_size`."""
    maximum = read_model_config(config).max_batch_size
    return BuildSettings(max_batch=maximum, opt_batch=min(opt_batch, maximum), **overrides)


@dataclass(frozen=True)
class Gpu:
    name: str
    compute_capability: str  # "9.0"


@dataclass(frozen=True)
class Target:
    """Where a plan is built or served: the TensorRT library and the visible GPUs."""

    tensorrt_version: str  # major.minor.patch: what an engine's compatibility depends on
    gpus: tuple[Gpu, ...]


def visible_gpus() -> str:
    try:
        return subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise NoGpuError(
            f"no NVIDIA GPU is visible (nvidia-smi: {exc}): install the driver and the NVIDIA "
            "Container Toolkit, or run the CPU stack (`docker compose --profile cpu up`)"
        ) from exc


def parse_gpus(nvidia_smi_csv: str) -> tuple[Gpu, ...]:
    """`nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader` -> the GPUs."""
    gpus = []
    for line in nvidia_smi_csv.strip().splitlines():
        name, _, capability = line.rpartition(",")
        if not name.strip() or not re.fullmatch(r"\d+\.\d+", capability.strip()):
            raise ValueError(f"unexpected nvidia-smi line {line!r}")
        gpus.append(Gpu(name.strip(), capability.strip()))
    return tuple(gpus)


def release_version(version: str) -> str:
    """'10.8.0.43' -> '10.8.0': the build number does not change the engine format."""
    parts = version.split(".")
    if len(parts) < 3 or not all(part.isdigit() for part in parts[:3]):
        raise ValueError(f"not a TensorRT version: {version!r}")
    return ".".join(parts[:3])


def version_from_code(code: int) -> str:
    """`getInferLibVersion()` -> 'major.minor.patch' (TensorRT 10 encodes major * 10000 + ...)."""
    if code >= 100_000:
        return f"{code // 10_000}.{code // 100 % 100}.{code % 100}"
    return f"{code // 1000}.{code // 100 % 10}.{code % 100}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance_record(
    settings: BuildSettings, target: Target, tensorrt_build: str, onnx_sha256: str
) -> dict[str, Any]:
    """What `model.plan.json` says about the plan beside it."""
    if not target.gpus:
        raise ValueError("a plan is built on a GPU: none is visible")
    gpu = target.gpus[0]
    return {
        "tensorrt_version": target.tensorrt_version,
        "tensorrt_build": tensorrt_build,
        "gpu_name": gpu.name,
        "compute_capability": gpu.compute_capability,
        "onnx_sha256": onnx_sha256,
        "settings": settings.record(),
    }


def plan_problem(
    plan: Path, record_path: Path, target: Target, onnx_sha256: str, settings: BuildSettings
) -> str | None:
    """Why the plan cannot be served on `target` from this ONNX with these settings, or None."""
    if not plan.is_file():
        return f"{plan} does not exist"
    if not record_path.is_file():
        return f"{plan} has no provenance record ({record_path.name}): its origin is unknown"
    try:
        record = json.loads(record_path.read_text())
        built_with = (record["tensorrt_version"], record["gpu_name"], record["compute_capability"])
        built_from, built_settings = record["onnx_sha256"], record["settings"]
    except (ValueError, KeyError, TypeError) as exc:
        return f"{record_path} is unreadable ({type(exc).__name__}: {exc})"
    version, gpu_name, capability = built_with
    if version != target.tensorrt_version:
        return f"built with TensorRT {version}, this server has TensorRT {target.tensorrt_version}"
    if not target.gpus:
        return "no GPU is visible"
    foreign = [gpu for gpu in target.gpus if (gpu.name, gpu.compute_capability) != built_with[1:]]
    if foreign:
        return (
            f"built on {gpu_name} (compute capability {capability}), this server has "
            f"{foreign[0].name} (compute capability {foreign[0].compute_capability})"
        )
    if built_from != onnx_sha256:
        return (
            f"built from ONNX sha256 {built_from[:12]}..., the served model.onnx is "
            f"{onnx_sha256[:12]}... (re-exported since)"
        )
    if built_settings != settings.record():
        return f"built with settings {built_settings}, the config asks for {settings.record()}"
    return None


def fallback_provenance(provenance: dict[str, Any], problem: str) -> dict[str, Any]:
    """weights.json for the fallback: WEIGHTS and the load-time warning say what is served."""
    note = f"FALLBACK resnet50 on ONNX Runtime + TensorRT EP FP16, model.plan not served: {problem}"
    warning = " ".join(filter(None, [provenance.get("warning"), f"{note}."]))
    return {
        **provenance,
        "weights": f"{provenance.get('weights', 'unknown')} [{note}]",
        "warning": warning,
    }


def parser_errors(parser: Any) -> list[str]:
    """Every error of a failed `trt.OnnxParser.parse`, one line each."""
    errors = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        errors.append(
            f"{index + 1}. node {error.node()} ({error.node_name()}, {error.node_operator()}): "
            f"{error.desc()}"
        )
    return errors


def build_plan(
    trt: ModuleType, onnx: bytes, settings: BuildSettings, timing_cache: bytes | None
) -> tuple[bytes, bytes]:
    """Parse the ONNX and build the FP16 plan; returns (plan, updated timing cache).

    TensorRT 10's Python API; `trt` is the `tensorrt` module (a fake one in the tests).
    """
    major = int(trt.__version__.split(".")[0])
    if major != TENSORRT_MAJOR:
        raise EngineBuildError(
            f"TensorRT {trt.__version__}: this builder is written for TensorRT {TENSORRT_MAJOR} "
            "(TensorRT 11 removed the FP16 builder flag); use the pinned NGC image"
        )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx):
        raise EngineBuildError(
            "TensorRT's ONNX parser failed:\n" + "\n".join(parser_errors(parser))
        )
    inputs = [network.get_input(index).name for index in range(network.num_inputs)]
    if inputs != [INPUT_NAME]:
        raise EngineBuildError(f"the ONNX has inputs {inputs}, expected [{INPUT_NAME!r}]")

    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
    cache = config.create_timing_cache(timing_cache or b"")
    # TensorRT 10.8 answers False for a cache from another device or version and then builds
    # without it: start a fresh one, so the volume's foreign cache is replaced, not kept forever
    if not config.set_timing_cache(cache, False):
        LOG.warning("the timing cache is from another GPU or TensorRT: starting a new one")
        cache = config.create_timing_cache(b"")
        if not config.set_timing_cache(cache, False):
            raise EngineBuildError("TensorRT refused even an empty timing cache")
    profile = builder.create_optimization_profile()
    shapes = settings.profile()
    profile.set_shape(INPUT_NAME, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError("build_serialized_network failed: TensorRT's log above says why")
    return bytes(plan), bytes(cache.serialize())


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
