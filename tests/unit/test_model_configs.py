"""Every model configuration, as Triton's own protobuf reads it: no server needed.

Each `config.pbtxt` and `configs/*.pbtxt` parses as a `ModelConfig`; a variant keeps its
model's name and tensors; the ensemble's steps are wired to tensors that exist; TensorRT
profiles end at `max_batch_size`; and every parameter a Python model reads is in the configs
that load it (and no config carries one that nothing reads).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tricolor.container import FALLBACK_CACHE
from tricolor.engine import settings_from_config
from tricolor.parameters import Parameters
from tricolor.settings import MODEL_REPOSITORY

CONFIGS = sorted(
    [*MODEL_REPOSITORY.glob("*/config.pbtxt"), *MODEL_REPOSITORY.glob("*/configs/*.pbtxt")]
)


def parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def model_dir(path: Path) -> Path:
    return path.parent if path.name == "config.pbtxt" else path.parent.parent


def tensors(config: model_config_pb2.ModelConfig) -> tuple[list, list]:
    def described(entries) -> list:
        return [(entry.name, entry.data_type, list(entry.dims)) for entry in entries]

    return described(config.input), described(config.output)


def test_the_repository_has_the_configs_the_contract_names() -> None:
    names = {str(path.relative_to(MODEL_REPOSITORY)) for path in CONFIGS}
    assert {
        "classify/config.pbtxt",
        "preprocess/config.pbtxt",
        "resnet50/config.pbtxt",
        "resnet50/configs/cpu.pbtxt",
        "resnet50/configs/onnx-tensorrt.pbtxt",
        "postprocess/config.pbtxt",
    } <= names, names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: str(path.relative_to(MODEL_REPOSITORY)))
def test_config_parses_as_a_model_config_named_after_its_folder(path: Path) -> None:
    config = parse(path)
    assert config.name == model_dir(path).name
    assert config.max_batch_size >= 32, "the contract batches at least 32 images"


@pytest.mark.parametrize(
    "path",
    sorted(MODEL_REPOSITORY.glob("*/configs/*.pbtxt")),
    ids=lambda path: str(path.relative_to(MODEL_REPOSITORY)),
)
def test_a_variant_keeps_its_models_tensors_and_batch(path: Path) -> None:
    variant, default = parse(path), parse(model_dir(path) / "config.pbtxt")
    assert tensors(variant) == tensors(default)
    assert variant.max_batch_size == default.max_batch_size


def io_names(model: str) -> tuple[set[str], set[str]]:
    inputs, outputs = tensors(parse(MODEL_REPOSITORY / model / "config.pbtxt"))
    return {name for name, _, _ in inputs}, {name for name, _, _ in outputs}


def test_ensemble_steps_are_wired_to_tensors_that_exist() -> None:
    ensemble = parse(MODEL_REPOSITORY / "classify" / "config.pbtxt")
    available = {entry.name for entry in ensemble.input}
    problems = []
    for step in ensemble.ensemble_scheduling.step:
        step_inputs, step_outputs = io_names(step.model_name)
        problems += [
            f"{step.model_name}: input_map key {key!r} is not one of its inputs"
            for key in step.input_map
            if key not in step_inputs
        ]
        problems += [
            f"{step.model_name}: reads {value!r}, which no earlier step produces"
            for value in step.input_map.values()
            if value not in available
        ]
        problems += [
            f"{step.model_name}: input {name!r} is fed by nothing"
            for name in sorted(step_inputs - set(step.input_map))
        ]
        problems += [
            f"{step.model_name}: output_map key {key!r} is not one of its outputs"
            for key in step.output_map
            if key not in step_outputs
        ]
        available |= set(step.output_map.values())
    problems += [
        f"ensemble output {entry.name!r} is produced by no step"
        for entry in ensemble.output
        if entry.name not in available
    ]
    assert not problems, "\n".join(problems)


def profile_batches(config: model_config_pb2.ModelConfig) -> dict[str, int]:
    """The batch dimension of each ONNX Runtime TensorRT profile shape ("input:64x3x224x224")."""
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    batches = {}
    for kind in ("min", "opt", "max"):
        name, _, shape = accelerator.parameters[f"trt_profile_{kind}_shapes"].partition(":")
        assert name == "input", accelerator.parameters
        batches[kind] = int(shape.split("x")[0])
    return batches


def test_tensorrt_profiles_end_at_max_batch_size() -> None:
    plan_config = MODEL_REPOSITORY / "resnet50" / "config.pbtxt"
    fallback = parse(MODEL_REPOSITORY / "resnet50" / "configs" / "onnx-tensorrt.pbtxt")
    plan = settings_from_config(plan_config)
    assert parse(plan_config).max_batch_size == plan.max_batch
    assert profile_batches(fallback) == {
        "min": plan.min_batch,
        "opt": plan.opt_batch,
        "max": fallback.max_batch_size,
    }
    tensorrt = fallback.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert tensorrt.parameters["precision_mode"] == "FP16"
    # the entrypoint creates the engine cache directory before Triton loads the fallback
    assert tensorrt.parameters["trt_engine_cache_path"] == str(FALLBACK_CACHE)


def parameters_read(model_file: Path) -> set[str]:
    """The literal keys the model reads through `tricolor.parameters.Parameters`
    (`parameters.integer("top_k", ...)`, `.number`, `.text`, `.choice`)."""
    readers = {name for name in vars(Parameters) if not name.startswith("_")} - {
        "from_model_config"
    }
    names = set()
    for node in ast.walk(ast.parse(model_file.read_text())):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        key = node.args[0] if node.args else None
        if (
            node.func.attr in readers
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "parameters"
            and isinstance(key, ast.Constant)
            and isinstance(key.value, str)
        ):
            names.add(key.value)
    return names


PYTHON_CONFIGS = [path for path in CONFIGS if parse(path).backend == "python"]


@pytest.mark.parametrize(
    "path", PYTHON_CONFIGS, ids=lambda path: str(path.relative_to(MODEL_REPOSITORY))
)
def test_every_parameter_a_python_model_reads_is_in_its_config(path: Path) -> None:
    read = parameters_read(model_dir(path) / "1" / "model.py")
    assert read, f"found no parameter reads in {model_dir(path).name}/1/model.py: update the test"
    configured = set(parse(path).parameters)
    assert read - configured == set(), f"read but not configured in {path.name}"
    assert configured - read == set(), f"configured but never read by {model_dir(path).name}"
