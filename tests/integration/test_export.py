"""build_engines/export.py with a fine-tuned checkpoint, run in the export venv like a user."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.helpers import EXPORT_PYTHON, start_server
from tricolor.client import TricolorClient
from tricolor.samples import sample_photos
from tricolor.settings import MODEL_REPOSITORY, PROJECT_ROOT

EXPORT = PROJECT_ROOT / "build_engines" / "export.py"
CLASSES = 47


# run in the export venv: torch's ResNet-50 with the checkpoint's state dict vs ONNX Runtime
CHECKPOINT_VS_ONNX = """
import json, sys
import numpy as np, onnxruntime, torch, torchvision
state_dict = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
model = torchvision.models.resnet50(num_classes=state_dict["fc.weight"].shape[0])
model.load_state_dict(state_dict)
model.eval()
images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
with torch.inference_mode():
    expected = model(images).numpy()
session = onnxruntime.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
served = session.run(["logits"], {"input": images.numpy()})[0]
scale = float(np.abs(expected).max())
print(json.dumps({"max_abs_diff": float(np.abs(served - expected).max()), "max_logit": scale}))
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A 47-class ResNet-50 state dict, as fine-tuning on house plants would leave it."""
    path = tmp_path_factory.mktemp("checkpoint") / "plants.pth"
    subprocess.run(
        [
            str(EXPORT_PYTHON),
            "-c",
            "import sys, torch, torchvision; torch.manual_seed(1); "
            f"model = torchvision.models.resnet50(num_classes={CLASSES}); "
            "torch.save(model.state_dict(), sys.argv[1])",
            str(path),
        ],
        check=True,
    )
    return path


def export(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(EXPORT_PYTHON),
            str(EXPORT),
            "--output",
            str(tmp_path / "model.onnx"),
            "--labels-out",
            str(tmp_path / "labels.txt"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_checkpoint_export_takes_class_count_and_labels(tmp_path: Path, checkpoint) -> None:
    labels = tmp_path / "plant_names.txt"
    labels.write_text("".join(f"plant {index}\n" for index in range(CLASSES)))
    done = export(tmp_path, "--weights", str(checkpoint), "--labels", str(labels))
    assert done.returncode == 0, done.stderr
    assert "max abs diff of logits" in done.stderr
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    assert (model_input.name, model_input.shape[1:]) == ("input", [3, 224, 224])
    logits = session.run(["logits"], {"input": np.zeros((3, 3, 224, 224), np.float32)})[0]
    assert logits.shape == (3, CLASSES)
    metadata = session.get_modelmeta().custom_metadata_map
    assert metadata["weights"] == "checkpoint:plants.pth" and "warning" not in metadata
    assert (tmp_path / "labels.txt").read_text() == labels.read_text()
    provenance = json.loads((tmp_path / "weights.json").read_text())
    assert provenance["num_classes"] == str(CLASSES)
    # the exported model is the checkpoint's: ONNX Runtime against torch with the state dict
    # loaded here (dropping the export's load_state_dict leaves a freshly initialised model)
    compared = subprocess.run(
        [
            str(EXPORT_PYTHON),
            "-c",
            CHECKPOINT_VS_ONNX,
            str(checkpoint),
            str(tmp_path / "model.onnx"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert compared.returncode == 0, compared.stderr[-3000:]
    difference = json.loads(compared.stdout)
    assert difference["max_abs_diff"] <= 1e-3, difference


def test_labels_that_do_not_match_the_checkpoint_are_refused(tmp_path: Path, checkpoint) -> None:
    labels = tmp_path / "too_few.txt"
    labels.write_text("".join(f"plant {index}\n" for index in range(CLASSES - 1)))
    done = export(tmp_path, "--weights", str(checkpoint), "--labels", str(labels))
    assert done.returncode != 0
    assert f"{CLASSES - 1} class names but the model has {CLASSES} classes" in done.stderr
    assert not (tmp_path / "model.onnx").exists()


FT_CLASSES = 3
# `make setup` with the venvs taken as built: the test must not reinstall them
VENV_STAMPS = (".venv/.installed", ".venv-export/.installed", ".venv-ui/.installed")


def make_setup(repository: Path, *variables: str) -> subprocess.CompletedProcess[str]:
    """`make setup VARIABLE=...` as a user types it, exporting into `repository` (a copy: the
    session's server serves the worktree's model_repository meanwhile)."""
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            *(f"--old-file={stamp}" for stamp in VENV_STAMPS),
            "setup",
            f"MODEL_REPOSITORY={repository}",
            *variables,
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_make_setup_follows_the_weights_and_labels_asked(tmp_path: Path) -> None:
    """A 3-class fine-tuned checkpoint served through `make setup`, then back to the default."""
    repository = tmp_path / "model_repository"
    shutil.copytree(MODEL_REPOSITORY, repository, ignore=shutil.ignore_patterns("*.onnx", "*.plan"))
    onnx = repository / "resnet50" / "1" / "model.onnx"
    shutil.copy2(MODEL_REPOSITORY / "resnet50" / "1" / "model.onnx", onnx)
    default_labels = (MODEL_REPOSITORY / "postprocess" / "labels.txt").read_text()
    served = json.loads((MODEL_REPOSITORY / "postprocess" / "weights.json").read_text())
    served_onnx = (MODEL_REPOSITORY / "resnet50" / "1" / "model.onnx").stat().st_mtime_ns
    weights = tmp_path / "ft.pth"
    subprocess.run(
        [
            str(EXPORT_PYTHON),
            "-c",
            "import sys, torch, torchvision; torch.manual_seed(2); "
            f"model = torchvision.models.resnet50(num_classes={FT_CLASSES}); "
            "torch.save(model.state_dict(), sys.argv[1])",
            str(weights),
        ],
        check=True,
    )
    labels = tmp_path / "ft_labels.txt"
    labels.write_text("monstera\npothos\nsnake plant\n")

    done = make_setup(repository, f"WEIGHTS={weights}", f"LABELS={labels}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"exporting: checkpoint {weights} asked, {served['weights']} recorded" in done.stderr
    assert (repository / "postprocess" / "labels.txt").read_text() == labels.read_text()
    server = start_server("tritonserver-finetuned.log", model_repository=repository)
    try:
        with TricolorClient(server.grpc_url) as client:
            answer = client.classify_one(next(iter(sample_photos().values())), "photo")
    finally:
        server.stop()
    assert answer.error is None, answer.error
    assert sorted(answer.labels) == ["monstera", "pothos", "snake plant"]
    assert answer.weights == "checkpoint:ft.pth"

    exported = onnx.stat().st_mtime_ns
    again = make_setup(repository, f"WEIGHTS={weights}", f"LABELS={labels}")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to do" in again.stderr and onnx.stat().st_mtime_ns == exported

    back = make_setup(repository, "WEIGHTS=random")
    assert back.returncode == 0, back.stdout + back.stderr
    assert "exporting: random weights (seed 0) asked, checkpoint:ft.pth recorded" in back.stderr
    assert (repository / "postprocess" / "labels.txt").read_text() == default_labels
    provenance = json.loads((repository / "postprocess" / "weights.json").read_text())
    assert (provenance["weights"], provenance["labels"]) == ("random", "imagenet")
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].shape == ["batch", 1000]
    # the session's server went on serving the worktree's repository, untouched
    assert (MODEL_REPOSITORY / "resnet50" / "1" / "model.onnx").stat().st_mtime_ns == served_onnx
