"""When `make setup` re-exports: build_engines/export.py's decision against weights.json, on
files made here (no torch: the decision reads files only)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tricolor.settings import PROJECT_ROOT


@pytest.fixture(scope="module")
def export() -> ModuleType:
    """build_engines/export.py as a module (a script, not a package; its dataclass needs it in
    sys.modules)."""
    name = "build_engines_export"
    spec = importlib.util.spec_from_file_location(
        name, PROJECT_ROOT / "build_engines" / "export.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An exported repository: random weights, seed 0, torchvision's labels."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "labels.txt").write_text("tench\ngoldfish\n")
    record(tmp_path, weights="random", seed="0", labels="imagenet")
    return tmp_path


def record(directory: Path, **provenance: str) -> None:
    (directory / "weights.json").write_text(json.dumps(provenance))


def reason(export: ModuleType, repository: Path, *argv: str) -> str | None:
    args = export.parse_args(
        [
            "--output",
            str(repository / "model.onnx"),
            "--labels-out",
            str(repository / "labels.txt"),
            *argv,
        ]
    )
    return export.export_reason(args)


def test_what_is_asked_is_not_exported_again(export, repository) -> None:
    assert reason(export, repository, "--weights", "random") is None
    assert reason(export, repository, "--weights", "random", "--force") == "--force"


def test_a_missing_output_or_record_is_exported(export, repository) -> None:
    (repository / "weights.json").unlink()
    assert "weights.json missing" in reason(export, repository, "--weights", "random")


def test_another_seed_is_exported(export, repository) -> None:
    assert reason(export, repository, "--weights", "random", "--seed", "1") == (
        "random weights (seed 1) asked, random recorded"
    )


def test_a_changed_checkpoint_or_labels_file_is_exported(export, repository, tmp_path) -> None:
    checkpoint, labels = tmp_path / "ft.pth", tmp_path / "ft_labels.txt"
    checkpoint.write_bytes(b"weights v1")
    labels.write_text("tench\ngoldfish\n")
    argv = ("--weights", str(checkpoint), "--labels", str(labels))
    assert reason(export, repository, *argv) == f"checkpoint {checkpoint} asked, random recorded"
    sha256 = export.sha256_of(checkpoint)
    record(repository, weights="checkpoint:ft.pth", checkpoint_sha256=sha256, labels="file:x")
    assert reason(export, repository, *argv) is None
    labels.write_text("tench\ncarp\n")
    assert reason(export, repository, *argv) == f"{labels} differs from {repository / 'labels.txt'}"
    labels.write_text("tench\ngoldfish\n")
    checkpoint.write_bytes(b"weights v2, retrained")
    assert "is not the checkpoint recorded (its SHA-256 differs)" in reason(
        export, repository, *argv
    )
    # the default names asked, where the served ones came from a file
    record(repository, weights="random", seed="0", labels="file:ft_labels.txt")
    assert "ImageNet-1k names asked" in reason(export, repository, "--weights", "random")


def test_random_fallback_is_replaced_once_the_imagenet_checkpoint_is_cached(
    export, repository, tmp_path
) -> None:
    record(repository, weights="random_fallback", seed="0", labels="imagenet")
    assert reason(export, repository, "--weights", "imagenet") is None
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "resnet50-11ad3fa6.pth").write_bytes(b"")
    assert "now in the torch hub cache" in reason(export, repository, "--weights", "imagenet")
    assert reason(export, repository, "--weights", "random") == (
        "random weights (seed 0) asked, random_fallback recorded"
    )
