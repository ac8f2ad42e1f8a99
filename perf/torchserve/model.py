"""Runs in .venv-torchserve: the peer's model archive. torchvision's ResNet-50 with seeded random
weights (as tricolor's offline export), TorchScript, TorchServe's built-in `image_classifier`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
import torchvision


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    scripted = torch.jit.script(model)
    scripted.save(str(args.out / "resnet50.pt"))
    (args.out / "index_to_name.json").write_text(
        json.dumps({str(index): [f"n{index:08d}", f"class_{index}"] for index in range(1000)})
    )
    store = args.out / "store"
    store.mkdir(exist_ok=True)
    subprocess.run(
        [str(Path(sys.executable).parent / "torch-model-archiver"),
         "--model-name", "resnet50", "--version", "1.0",
         "--serialized-file", str(args.out / "resnet50.pt"),
         "--handler", "image_classifier",
         "--extra-files", str(args.out / "index_to_name.json"),
         "--export-path", str(store), "--force"],
        check=True,
    )  # fmt: skip
    print(store / "resnet50.mar")


if __name__ == "__main__":
    main()
