"""build_engines/export.py with a fine-tuned checkpoint, run in the export venv like a user."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.helpers import EXPORT_PYTHON
from tricolor.settings import PROJECT_ROOT

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
