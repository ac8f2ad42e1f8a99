"""Triton model configurations (`config.pbtxt`, `configs/<name>.pbtxt`) read with Triton's own
schema: tritonclient's `model_config_pb2` and protobuf's text format, never regexes."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2


def read_model_config(path: Path) -> model_config_pb2.ModelConfig:
    """The parsed configuration; a file that is not a valid ModelConfig names itself."""
    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ValueError(f"{path}: not a valid Triton model configuration: {exc}") from exc


def string_parameter(config: model_config_pb2.ModelConfig, key: str) -> str:
    """The `string_value` of one entry of the config's `parameters` block."""
    if key not in config.parameters:
        raise KeyError(f"model {config.name!r} has no parameter {key!r}")
    return config.parameters[key].string_value
