"""Export torchvision's ResNet-50 to ONNX and write the class labels for `postprocess`.

Run in the export venv from the repository root:

    .venv-export/bin/python build_engines/export.py [--weights imagenet|random|PATH] [--force]

It follows what it is asked for: when `weights.json` beside the labels records other weights
(another seed, another checkpoint's SHA-256, random weights where the ImageNet checkpoint is
now in the torch hub cache) or `labels.txt` holds other labels, it says why and re-exports;
otherwise it says so and exits without importing torch. `--force` re-exports anyway.

The ONNX model has input `input` FP32 [-1, 3, 224, 224] and output `logits` FP32
[-1, num_classes], a dynamic batch axis, and provenance in its metadata (`weights`,
`num_classes`, `resize_size`, and `warning` whenever the weights are random). It is checked
with `onnx.checker` and against PyTorch through ONNX Runtime before it replaces anything.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import os
import socket
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tricolor.weights import PROVENANCE_FILE, REEXPORT_HINT, random_weights_warning

if TYPE_CHECKING:
    import torch

LOG = logging.getLogger("export")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "model_repository" / "resnet50" / "1" / "model.onnx"
DEFAULT_LABELS_OUT = REPO_ROOT / "model_repository" / "postprocess" / "labels.txt"

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
IMAGE_SIZE = 224
RESIZE_SIZE = 232  # IMAGENET1K_V2's eval resize; random weights follow the same recipe
MIN_OPSET = 17
CHECK_BATCH = 2
MAX_ABS_DIFF = 1e-3  # ONNX Runtime vs PyTorch logits, both FP32 on CPU
DOWNLOAD_TIMEOUT_S = 10.0
IMAGENET_CHECKPOINT = "resnet50-11ad3fa6.pth"  # IMAGENET1K_V2's file in the torch hub cache
DEFAULT_LABELS = "imagenet"  # weights.json's `labels` when the names come from torchvision


@dataclass
class LoadedWeights:
    """A ready model plus what to record about where its weights came from."""

    model: torch.nn.Module
    labels: list[str]
    metadata: dict[str, str]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and sanity-check the command line (no torch needed)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--weights",
        default="imagenet",
        help="'imagenet' (IMAGENET1K_V2; falls back to seeded random weights, loudly, when "
        "unavailable), 'random' (seeded, for offline use and CI) or a state-dict checkpoint "
        "path (default: %(default)s)",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        help="class names, one per line in class-index order (required with a checkpoint; "
        "default: the ImageNet-1k names shipped with torchvision)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for random weights and the check")
    parser.add_argument("--opset", type=int, default=MIN_OPSET, help="ONNX opset (>= 17)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="ONNX file to write")
    parser.add_argument(
        "--labels-out", type=Path, default=DEFAULT_LABELS_OUT, help="labels file to write"
    )
    parser.add_argument(
        "--force", action="store_true", help="re-export even if the outputs are what is asked"
    )
    args = parser.parse_args(argv)
    if args.opset < MIN_OPSET:
        parser.error(f"--opset must be >= {MIN_OPSET}")
    if args.weights not in ("imagenet", "random"):
        if not Path(args.weights).is_file():
            parser.error(f"--weights: no such checkpoint file: {args.weights}")
        if args.labels is None:
            parser.error("--labels FILE is required with a checkpoint")
    if args.labels is not None and not args.labels.is_file():
        parser.error(f"--labels: no such file: {args.labels}")
    return args


def read_labels(path: Path) -> list[str]:
    """Read one class name per line; blank names are an error."""
    labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    blank = [i + 1 for i, label in enumerate(labels) if not label]
    if blank:
        raise SystemExit(f"{path}: blank class name on line(s) {blank[:10]}")
    return labels


def check_label_count(labels: list[str], num_classes: int, source: str) -> None:
    """Fail clearly when the labels do not match the model's classifier."""
    if len(labels) != num_classes:
        raise SystemExit(
            f"{source} has {len(labels)} class names but the model has {num_classes} classes"
        )


def random_model(num_classes: int, seed: int) -> torch.nn.Module:
    """torchvision's ResNet-50 with its default initialisation, seeded."""
    import torch
    from torchvision.models import resnet50

    torch.manual_seed(seed)
    return resnet50(weights=None, num_classes=num_classes)


def random_metadata(kind: str, seed: int) -> dict[str, str]:
    """Metadata for random weights, including the warning the serving side shows."""
    return {
        "weights": kind,
        "seed": str(seed),
        "warning": random_weights_warning(kind),
    }


def warn_fallback(reason: str) -> None:
    """Say once, unmissably, that ImageNet weights were unavailable."""
    bar = "!" * 78
    LOG.warning(
        "\n%s\n!! WARNING: ImageNet weights for ResNet-50 are NOT available:\n!!   %s\n"
        "!! Exporting SEEDED RANDOM weights instead: the served labels are MEANINGLESS.\n"
        "!! The model metadata records weights=random_fallback and a warning.\n"
        "!! To fix: %s\n%s",
        bar,
        reason,
        REEXPORT_HINT,
        bar,
    )


def load_imagenet(labels: list[str] | None, seed: int) -> LoadedWeights:
    """IMAGENET1K_V2 from the hub cache or a download; seeded random weights if neither works."""
    import torch
    from torchvision.models import ResNet50_Weights, resnet50

    weights = ResNet50_Weights.IMAGENET1K_V2
    labels = labels if labels is not None else list(weights.meta["categories"])
    check_label_count(labels, len(weights.meta["categories"]), "--labels")
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    LOG.info("loading IMAGENET1K_V2 (cache: %s, else %s)", checkpoints, weights.url)
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        state_dict = weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, http.client.HTTPException) as exc:
        warn_fallback(f"{type(exc).__name__}: {exc}")
        model = random_model(len(labels), seed)
        return LoadedWeights(model, labels, random_metadata("random_fallback", seed))
    finally:
        socket.setdefaulttimeout(previous_timeout)
    model = resnet50()
    model.load_state_dict(state_dict)
    return LoadedWeights(model, labels, {"weights": "imagenet1k_v2"})


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_checkpoint(path: Path, labels: list[str]) -> LoadedWeights:
    """A local state dict (e.g. fine-tuned); num_classes comes from its `fc.weight`."""
    import torch
    from torchvision.models import resnet50

    state_dict: Any = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state_dict, dict) and "fc.weight" not in state_dict:
        state_dict = state_dict.get("state_dict", state_dict)
    if not isinstance(state_dict, dict) or "fc.weight" not in state_dict:
        raise SystemExit(f"{path}: not a ResNet-50 state dict (no 'fc.weight')")
    num_classes = int(state_dict["fc.weight"].shape[0])
    check_label_count(labels, num_classes, "--labels")
    model = resnet50(weights=None, num_classes=num_classes)
    model.load_state_dict(state_dict)
    metadata = {"weights": f"checkpoint:{path.name}", "checkpoint_sha256": sha256_of(path)}
    return LoadedWeights(model, labels, metadata)


def load_weights(args: argparse.Namespace) -> LoadedWeights:
    """Build the model the command line asks for."""
    labels = read_labels(args.labels) if args.labels is not None else None
    if args.weights == "imagenet":
        return load_imagenet(labels, args.seed)
    if args.weights == "random":
        from torchvision.models import ResNet50_Weights

        if labels is None:
            labels = list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
        model = random_model(len(labels), args.seed)
        return LoadedWeights(model, labels, random_metadata("random", args.seed))
    assert labels is not None, "parse_args requires --labels with a checkpoint"
    return load_checkpoint(Path(args.weights), labels)


def export_onnx(model: torch.nn.Module, sample: torch.Tensor, path: Path, opset: int) -> None:
    """Legacy TorchScript exporter: exact tensor names, no onnxscript dependency."""
    import torch

    # The TorchScript exporter is deprecated upstream but is the one that needs no onnxscript.
    warnings.filterwarnings(
        "ignore", message="You are using the legacy TorchScript", category=DeprecationWarning
    )
    torch.onnx.export(
        model,
        (sample,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        opset_version=opset,
        do_constant_folding=True,
        dynamo=False,
    )


def add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Write provenance into `metadata_props`, check the model, keep it a single file."""
    import onnx

    model = onnx.load(str(path))
    for key, value in sorted(metadata.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(path), save_as_external_data=False)


def verify_with_ort(path: Path, sample: torch.Tensor, expected: torch.Tensor) -> float:
    """Run the sample through ONNX Runtime (full batch and batch 1); return the max abs diff."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    names = ([i.name for i in inputs], [o.name for o in outputs])
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise SystemExit(f"unexpected ONNX tensor names {names}")
    batch = sample.numpy()
    reference = expected.numpy()
    diff = float(np.abs(session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0] - reference).max())
    single = session.run([OUTPUT_NAME], {INPUT_NAME: batch[:1]})[0]
    return max(diff, float(np.abs(single - reference[:1]).max()))


def write_labels(path: Path, labels: list[str]) -> None:
    """Write one class per line, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
    tmp.replace(path)


def write_provenance(path: Path, metadata: dict[str, str]) -> None:
    """`weights.json` beside the labels: `postprocess` reports it in every answer (`WEIGHTS`)."""
    keys = (
        "weights",
        "warning",
        "num_classes",
        "resize_size",
        "seed",
        "checkpoint_sha256",
        "labels",
    )
    provenance = {key: metadata[key] for key in keys if key in metadata}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def run_export(args: argparse.Namespace) -> int:
    """Export, check and write both artefacts; return the exit code."""
    import torch
    import torchvision

    weights = load_weights(args)
    model = weights.model.eval()
    num_classes = len(weights.labels)
    metadata = {
        **weights.metadata,
        "num_classes": str(num_classes),
        "resize_size": str(RESIZE_SIZE),
        "labels": DEFAULT_LABELS if args.labels is None else f"file:{args.labels.name}",
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "exporter": "build_engines/export.py (torch.onnx, dynamo=False)",
    }
    generator = torch.Generator().manual_seed(args.seed)
    sample = torch.randn(CHECK_BATCH, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    with torch.inference_mode():
        expected = model(sample)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(f".{args.output.stem}.tmp{args.output.suffix}")
    try:
        LOG.info("exporting ONNX (opset %d) to %s", args.opset, args.output)
        export_onnx(model, sample, tmp, args.opset)
        add_metadata(tmp, metadata)
        max_diff = verify_with_ort(tmp, sample, expected)
        LOG.info(
            "PyTorch vs ONNX Runtime: max abs diff of logits %.3g (bound %g, max |logit| %.3g)",
            max_diff,
            MAX_ABS_DIFF,
            float(expected.abs().max()),
        )
        if not max_diff <= MAX_ABS_DIFF:
            LOG.error("ONNX Runtime disagrees with PyTorch beyond the bound; nothing written")
            return 1
        tmp.replace(args.output)
    finally:
        tmp.unlink(missing_ok=True)
    write_labels(args.labels_out, weights.labels)
    write_provenance(args.labels_out.with_name(PROVENANCE_FILE), metadata)
    LOG.info(
        "wrote %s (%d classes, weights=%s) and %s",
        args.output,
        num_classes,
        metadata["weights"],
        args.labels_out,
    )
    return 0


def imagenet_checkpoint_cached() -> bool:
    """Whether IMAGENET1K_V2 is in the torch hub cache (torch.hub.get_dir's rule, no torch)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    torch_home = Path(os.environ.get("TORCH_HOME") or Path(cache) / "torch")
    return (torch_home / "hub" / "checkpoints" / IMAGENET_CHECKPOINT).is_file()


def asked_weights_differ(args: argparse.Namespace, recorded: dict[str, str]) -> str | None:
    """Why the recorded weights are not those asked for, or None when they are."""
    weights = recorded.get("weights", "?")
    if args.weights == "random":
        if weights != "random" or recorded.get("seed") != str(args.seed):
            return f"random weights (seed {args.seed}) asked, {weights} recorded"
    elif args.weights == "imagenet":
        if weights == "random_fallback" and recorded.get("seed") == str(args.seed):
            if imagenet_checkpoint_cached():
                return f"{IMAGENET_CHECKPOINT} is now in the torch hub cache"
        elif weights != "imagenet1k_v2":
            return f"ImageNet weights asked, {weights} recorded"
    else:
        path = Path(args.weights)
        if weights != f"checkpoint:{path.name}":
            return f"checkpoint {path} asked, {weights} recorded"
        if recorded.get("checkpoint_sha256") != sha256_of(path):
            return f"{path} is not the checkpoint recorded (its SHA-256 differs)"
    return None


def asked_labels_differ(args: argparse.Namespace, recorded: dict[str, str]) -> str | None:
    """Why the served labels are not those asked for, or None when they are."""
    if args.labels is None:
        # weights.json before `labels` was recorded: only checkpoints came with their own names
        default = DEFAULT_LABELS if not recorded.get("checkpoint_sha256") else "a labels file"
        if recorded.get("labels", default) != DEFAULT_LABELS:
            return "torchvision's ImageNet-1k names asked, another labels file served"
    elif read_labels(args.labels) != read_labels(args.labels_out):
        return f"{args.labels} differs from {args.labels_out}"
    return None


def export_reason(args: argparse.Namespace) -> str | None:
    """Why an export must run (outputs missing, or not what is asked), or None."""
    provenance = args.labels_out.with_name(PROVENANCE_FILE)
    missing = [path for path in (args.output, args.labels_out, provenance) if not path.is_file()]
    if missing:
        return f"{', '.join(map(str, missing))} missing"
    if args.force:
        return "--force"
    recorded = json.loads(provenance.read_text(encoding="utf-8"))
    return asked_weights_differ(args, recorded) or asked_labels_differ(args, recorded)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    reason = export_reason(args)
    if reason is None:
        LOG.info(
            "%s and %s are what is asked (weights %s%s); nothing to do (--force re-exports)",
            args.output,
            args.labels_out,
            args.weights,
            "" if args.labels is None else f", labels {args.labels}",
        )
        return 0
    LOG.info("exporting: %s", reason)
    return run_export(args)


if __name__ == "__main__":
    sys.exit(main())
