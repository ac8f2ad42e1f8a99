"""A copy of model_repository with configuration overrides, for experiments.

`--set MODEL.KEY=VALUE`: KEY `instances` sets the instance_group count,
`max_queue_delay_microseconds` the dynamic batcher's delay, anything else the string value of
that `parameters` entry (added if absent). The served file is `configs/cpu.pbtxt` where it
exists (the launcher's `--model-config-name=cpu`), else `config.pbtxt`. ONNX files are linked,
not copied.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from common import MODEL_REPOSITORY


def served_config(model_dir: Path) -> Path:
    cpu = model_dir / "configs" / "cpu.pbtxt"
    return cpu if cpu.exists() else model_dir / "config.pbtxt"


def apply(text: str, key: str, value: str) -> str:
    if key == "instances":
        new, count = re.subn(r"(instance_group\s*\[\s*\{\s*count:\s*)\d+", rf"\g<1>{value}", text)
    elif key == "max_queue_delay_microseconds":
        new, count = re.subn(r"(max_queue_delay_microseconds:\s*)\d+", rf"\g<1>{value}", text)
    else:
        pattern = rf'(\{{\s*key:\s*"{re.escape(key)}",\s*value:\s*\{{\s*string_value:\s*")[^"]*'
        new, count = re.subn(pattern, rf"\g<1>{value}", text)
        if count == 0:
            entry = f'  {{ key: "{key}", value: {{ string_value: "{value}" }} }},\n'
            new, count = re.subn(r"(parameters\s*\[\s*\n)", rf"\g<1>{entry}", text)
    if count == 0:
        raise ValueError(f"cannot set {key}={value}: no place for it in the config")
    return new


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
        config = served_config(target / model)
        config.write_text(apply(config.read_text(), key, value))
    return target
