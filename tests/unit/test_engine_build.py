"""The TensorRT plan's build and stale-plan decision, up to the TensorRT calls, without TensorRT.

`tricolor.engine.build_plan` takes the `tensorrt` module as an argument: here it gets a
recording fake, so the shapes, precision, workspace, timing cache and parser-error report are
checked exactly as the TensorRT 10 API receives them. The provenance record, the staleness
decision and the Triton entrypoint's choice between the plan and the ONNX Runtime + TensorRT
fallback run on real files in a temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tricolor.container import choose, prepare_gpu_repository
from tricolor.engine import (
    FALLBACK_CONFIG,
    OPT_BATCH,
    PLAN_NAME,
    RECORD_NAME,
    BuildSettings,
    EngineBuildError,
    Gpu,
    Target,
    build_plan,
    fallback_provenance,
    parse_gpus,
    plan_problem,
    provenance_record,
    release_version,
    settings_from_config,
    version_from_code,
)
from tricolor.settings import MODEL_REPOSITORY

RESNET50_CONFIG = MODEL_REPOSITORY / "resnet50" / "config.pbtxt"
H100 = Gpu("NVIDIA H100 80GB HBM3", "9.0")
HERE = Target("10.8.0", (H100,))


class FakeTensorRT:
    """The slice of the TensorRT 10 Python API `build_plan` uses; it records every call."""

    class Logger:
        WARNING = "warning"

        def __init__(self, severity: str) -> None:
            self.severity = severity

    BuilderFlag = SimpleNamespace(FP16="FP16")
    MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")

    def __init__(self, version: str = "10.8.0.43", errors: list[str] | None = None) -> None:
        self.__version__ = version
        self.errors = errors or []
        self.calls: list[tuple] = []
        self.foreign_caches: set[bytes] = set()  # caches "from another device"
        fake = self

        class Cache:
            def __init__(self, data: bytes) -> None:
                self.data = data

            def serialize(self) -> bytes:
                return self.data + b"+tuned"

        class Config:
            def set_flag(self, flag: str) -> None:
                fake.calls.append(("set_flag", flag))

            def set_memory_pool_limit(self, pool: str, size: int) -> None:
                fake.calls.append(("set_memory_pool_limit", pool, size))

            def create_timing_cache(self, data: bytes) -> Cache:
                fake.calls.append(("create_timing_cache", data))
                return Cache(data)

            def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
                fake.calls.append(("set_timing_cache", cache.data, ignore_mismatch))
                # TensorRT 10.8: False (and the build goes on without it) for a foreign cache
                return cache.data not in fake.foreign_caches

            def add_optimization_profile(self, profile: Profile) -> None:
                fake.calls.append(("add_optimization_profile", profile.shapes))

        class Profile:
            def set_shape(self, name: str, low: tuple, opt: tuple, high: tuple) -> None:
                self.shapes = (name, low, opt, high)

        class Network:
            num_inputs = 1

            def get_input(self, index: int) -> SimpleNamespace:
                return SimpleNamespace(name="input")

        class Parser:
            def __init__(self, network: Network, logger: object) -> None:
                self.num_errors = len(fake.errors)

            def parse(self, onnx: bytes) -> bool:
                fake.calls.append(("parse", onnx))
                return not fake.errors

            def get_error(self, index: int) -> SimpleNamespace:
                return SimpleNamespace(
                    node=lambda: index,
                    node_name=lambda: f"node{index}",
                    node_operator=lambda: "Conv",
                    desc=lambda: fake.errors[index],
                )

        class Builder:
            def __init__(self, logger: object) -> None:
                pass

            def create_network(self, flags: int) -> Network:
                fake.calls.append(("create_network", flags))
                return Network()

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Network, config: Config) -> bytes:
                fake.calls.append(("build_serialized_network",))
                return b"PLAN"

        self.Builder, self.OnnxParser = Builder, Parser


def test_build_plan_asks_tensorrt_for_fp16_the_profile_workspace_and_timing_cache() -> None:
    trt = FakeTensorRT()
    settings = BuildSettings(max_batch=64, workspace_bytes=3 << 30)
    plan, cache = build_plan(trt, b"ONNX", settings, timing_cache=b"old")
    assert (plan, cache) == (b"PLAN", b"old+tuned")
    assert trt.calls == [
        ("create_network", 0),
        ("parse", b"ONNX"),
        ("set_flag", "FP16"),
        ("set_memory_pool_limit", "WORKSPACE", 3 << 30),
        ("create_timing_cache", b"old"),
        ("set_timing_cache", b"old", False),
        (
            "add_optimization_profile",
            ("input", (1, 3, 224, 224), (OPT_BATCH, 3, 224, 224), (64, 3, 224, 224)),
        ),
        ("build_serialized_network",),
    ]


def test_build_plan_starts_an_empty_timing_cache_when_there_is_none() -> None:
    trt = FakeTensorRT()
    build_plan(trt, b"ONNX", BuildSettings(max_batch=8, opt_batch=4), timing_cache=None)
    assert ("create_timing_cache", b"") in trt.calls


def test_a_timing_cache_tensorrt_refuses_is_replaced_by_a_fresh_one() -> None:
    # a cache in the engines volume from another GPU: TensorRT says False and would build
    # without any cache, so the foreign one would be written back and never refreshed
    trt = FakeTensorRT()
    trt.foreign_caches.add(b"from-an-a100")
    plan, cache = build_plan(
        trt, b"ONNX", BuildSettings(max_batch=64), timing_cache=b"from-an-a100"
    )
    cache_calls = [call for call in trt.calls if "timing_cache" in call[0]]
    assert cache_calls == [
        ("create_timing_cache", b"from-an-a100"),
        ("set_timing_cache", b"from-an-a100", False),
        ("create_timing_cache", b""),
        ("set_timing_cache", b"", False),
    ]
    assert (plan, cache) == (b"PLAN", b"+tuned")


def test_parser_errors_are_reported_one_by_one() -> None:
    trt = FakeTensorRT(errors=["unsupported attribute", "shape mismatch"])
    with pytest.raises(EngineBuildError) as failure:
        build_plan(trt, b"ONNX", BuildSettings(max_batch=64), timing_cache=None)
    lines = str(failure.value).splitlines()
    assert lines[1:] == [
        "1. node 0 (node0, Conv): unsupported attribute",
        "2. node 1 (node1, Conv): shape mismatch",
    ]
    assert ("build_serialized_network",) not in trt.calls


def test_build_plan_refuses_another_tensorrt_major() -> None:
    with pytest.raises(EngineBuildError, match="TensorRT 11.0.0.1: this builder is written for"):
        build_plan(FakeTensorRT("11.0.0.1"), b"ONNX", BuildSettings(max_batch=64), None)


def test_profile_max_is_the_served_configs_max_batch_size() -> None:
    config = text_format.Parse(RESNET50_CONFIG.read_text(), model_config_pb2.ModelConfig())
    settings = settings_from_config(RESNET50_CONFIG)
    assert config.platform == "tensorrt_plan"
    assert settings.profile() == {
        "min": (1, 3, 224, 224),
        "opt": (OPT_BATCH, 3, 224, 224),
        "max": (config.max_batch_size, 3, 224, 224),
    }
    assert [list(config.input[0].dims)] == [list(settings.image_shape)]
    assert (settings.precision, settings.workspace_bytes) == ("fp16", 2 << 30)


@pytest.mark.parametrize(
    ("low", "opt", "high"), [(0, 1, 8), (2, 1, 8), (1, 16, 8)], ids=["zero", "min>opt", "opt>max"]
)
def test_settings_refuse_an_impossible_profile(low: int, opt: int, high: int) -> None:
    with pytest.raises(ValueError, match="batch sizes must satisfy"):
        BuildSettings(min_batch=low, opt_batch=opt, max_batch=high)


def test_settings_clamp_opt_to_a_small_max_batch(tmp_path: Path) -> None:
    config = tmp_path / "config.pbtxt"
    config.write_text('name: "resnet50"\nmax_batch_size: 8\n')
    assert settings_from_config(config).profile()["opt"] == (8, 3, 224, 224)


def test_versions_and_gpus_are_parsed_as_tensorrt_and_nvidia_smi_give_them() -> None:
    assert release_version("10.8.0.43") == "10.8.0"
    assert version_from_code(100800) == "10.8.0"  # TensorRT 10: major * 10000 + minor * 100
    assert version_from_code(8601) == "8.6.1"
    assert parse_gpus("NVIDIA H100 80GB HBM3, 9.0\nNVIDIA A10G, 8.6\n") == (
        H100,
        Gpu("NVIDIA A10G", "8.6"),
    )
    with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
        parse_gpus("No devices were found\n")


# the fake ONNX files' bytes and their SHA-256, computed here, not by the product's file_sha256
ONNX_BYTES = b"onnx bytes"
ONNX_SHA256 = hashlib.sha256(ONNX_BYTES).hexdigest()


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path, str, BuildSettings]:
    """A plan and its record as build_engine.py leaves them, built on HERE."""
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(ONNX_BYTES)
    settings = BuildSettings(max_batch=64)
    plan, record = tmp_path / PLAN_NAME, tmp_path / RECORD_NAME
    plan.write_bytes(b"PLAN")
    sha = ONNX_SHA256
    record.write_text(json.dumps(provenance_record(settings, HERE, "10.8.0.43", sha)))
    return plan, record, sha, settings


def test_provenance_record_says_where_the_plan_came_from(built) -> None:
    _, record, sha, _ = built
    assert json.loads(record.read_text()) == {
        "tensorrt_version": "10.8.0",
        "tensorrt_build": "10.8.0.43",
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "compute_capability": "9.0",
        "onnx_sha256": sha,
        "settings": {
            "max_batch": 64,
            "opt_batch": OPT_BATCH,
            "min_batch": 1,
            "precision": "fp16",
            "workspace_bytes": 2 << 30,
            "image_shape": [3, 224, 224],
        },
    }


def test_a_plan_built_here_from_this_onnx_is_current(built) -> None:
    plan, record, sha, settings = built
    assert plan_problem(plan, record, HERE, sha, settings) is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("tensorrt", "built with TensorRT 10.8.0, this server has TensorRT 10.9.0"),
        ("gpu", "built on NVIDIA H100 80GB HBM3 (compute capability 9.0), this server has "),
        ("second_gpu", "this server has NVIDIA L4 (compute capability 8.9)"),
        ("onnx", "built from ONNX sha256 "),
        ("settings", "built with settings "),
        ("no_gpu", "no GPU is visible"),
        ("no_plan", "does not exist"),
        ("no_record", "has no provenance record"),
        ("bad_record", "is unreadable"),
    ],
)
def test_a_stale_or_foreign_plan_is_refused_with_the_reason(built, change, expected) -> None:
    plan, record, sha, settings = built
    target = HERE
    if change == "tensorrt":
        target = Target("10.9.0", HERE.gpus)
    elif change == "gpu":
        target = Target("10.8.0", (Gpu("NVIDIA A10G", "8.6"),))
    elif change == "second_gpu":
        target = Target("10.8.0", (H100, Gpu("NVIDIA L4", "8.9")))
    elif change == "onnx":
        sha = "0" * 64
    elif change == "settings":
        settings = BuildSettings(max_batch=32)
    elif change == "no_gpu":
        target = Target("10.8.0", ())
    elif change == "no_plan":
        plan.unlink()
    elif change == "no_record":
        record.unlink()
    elif change == "bad_record":
        record.write_text('{"tensorrt_version": "10.8.0"}')
    problem = plan_problem(plan, record, target, sha, settings)
    assert problem is not None and expected in problem, problem


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """The baked model repository's resnet50 and postprocess provenance, as in the image."""
    source = tmp_path / "source"
    (source / "resnet50" / "1").mkdir(parents=True)
    shutil.copy(RESNET50_CONFIG, source / "resnet50" / "config.pbtxt")
    shutil.copytree(MODEL_REPOSITORY / "resnet50" / "configs", source / "resnet50" / "configs")
    (source / "resnet50" / "1" / "model.onnx").write_bytes(ONNX_BYTES)
    (source / "postprocess").mkdir()
    (source / "postprocess" / "weights.json").write_text(json.dumps({"weights": "imagenet1k_v2"}))
    return source


def engines_for(repository: Path, directory: Path, target: Target) -> Path:
    directory.mkdir()
    settings = settings_from_config(repository / "resnet50" / "config.pbtxt")
    assert (repository / "resnet50" / "1" / "model.onnx").read_bytes() == ONNX_BYTES
    sha = ONNX_SHA256
    (directory / PLAN_NAME).write_bytes(b"PLAN")
    record = provenance_record(settings, target, "10.8.0.43", sha)
    (directory / RECORD_NAME).write_text(json.dumps(record))
    return directory


def test_entrypoint_serves_a_current_plan_and_leaves_weights_alone(repository, tmp_path) -> None:
    engines = engines_for(repository, tmp_path / "engines", HERE)
    served = tmp_path / "served"
    choice = prepare_gpu_repository(repository, served, engines, HERE)
    assert (choice.config_name, choice.problem) == (None, None)
    assert (served / "resnet50" / "1" / PLAN_NAME).read_bytes() == b"PLAN"
    weights = json.loads((served / "postprocess" / "weights.json").read_text())
    assert weights == {"weights": "imagenet1k_v2"}


def test_entrypoint_falls_back_loudly_on_a_foreign_plan(repository, tmp_path) -> None:
    engines = engines_for(repository, tmp_path / "engines", Target("10.7.0", HERE.gpus))
    served = tmp_path / "served"
    choice = prepare_gpu_repository(repository, served, engines, HERE)
    assert choice.config_name == FALLBACK_CONFIG
    # the fallback's config is in the copy Triton is pointed at
    assert (served / "resnet50" / "configs" / f"{FALLBACK_CONFIG}.pbtxt").is_file()
    assert not (served / "resnet50" / "1" / PLAN_NAME).exists()
    weights = json.loads((served / "postprocess" / "weights.json").read_text())
    assert weights["weights"].startswith("imagenet1k_v2 [FALLBACK resnet50 on ONNX Runtime")
    assert "built with TensorRT 10.7.0, this server has TensorRT 10.8.0" in weights["weights"]
    assert "FALLBACK" in weights["warning"]
    # the baked repository is never touched
    assert json.loads((repository / "postprocess" / "weights.json").read_text()) == {
        "weights": "imagenet1k_v2"
    }


def test_entrypoint_falls_back_when_the_engine_step_left_nothing(repository, tmp_path) -> None:
    choice = choose(repository, tmp_path / "missing", HERE)
    assert choice.config_name == FALLBACK_CONFIG
    assert "does not exist" in (choice.problem or "")


def test_fallback_keeps_the_random_weights_warning() -> None:
    provenance = {"weights": "random", "warning": "RANDOM weights."}
    changed = fallback_provenance(provenance, "no plan")
    assert changed["warning"].startswith("RANDOM weights. FALLBACK resnet50")
    assert changed["weights"].startswith("random [FALLBACK")
