"""A copy of model_repository with configuration overrides, for experiments.

`--set MODEL.KEY=VALUE`: KEY `instances` sets the instance_group count,
`max_queue_delay_microseconds` the dynamic batcher's delay, anything else the string value of
that `parameters` entry (added if absent). The served file is `configs/cpu.pbtxt` where it
exists (the launcher's `--model-config-name=cpu`), else `config.pbtxt`; it is read and written
with Triton's own schema. ONNX files are linked, not copied.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tricolor.model_config import read_model_config
from tricolor.settings import MODEL_REPOSITORY


def served_config(model_dir: Path) -> Path:
    cpu = model_dir / "configs" / "cpu.pbtxt"
    return cpu if cpu.exists() else model_dir / "config.pbtxt"


def apply(config: model_config_pb2.ModelConfig, key: str, value: str) -> None:
    if key == "instances":
        if len(config.instance_group) != 1:
            raise ValueError(f"{config.name}: instances wants exactly one instance_group")
        config.instance_group[0].count = int(value)
    elif key == "max_queue_delay_microseconds":
        if not config.HasField("dynamic_batching"):
            raise ValueError(f"{config.name}: no dynamic_batching to set a delay on")
        config.dynamic_batching.max_queue_delay_microseconds = int(value)
    else:
        config.parameters[key].string_value = value


def prepare(overrides: list[str], target: Path, source: Path = MODEL_REPOSITORY) -> Path:
    """`source` itself when there is nothing to override, else an overridden copy."""
    if not overrides:
        return source
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.onnx"))
    for onnx in source.glob("*/*/*.onnx"):
        link = target / onnx.relative_to(source)
        link.symlink_to(onnx.resolve())
    for override in overrides:
        name, _, value = override.partition("=")
        model, _, key = name.partition(".")
        if not (model and key and value):
            raise ValueError(f"--set wants MODEL.KEY=VALUE, got {override!r}")
        path = served_config(target / model)
        config = read_model_config(path)
        apply(config, key, value)
        path.write_text(text_format.MessageToString(config))
    return target
