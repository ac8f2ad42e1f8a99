"""Benchmark decode + preprocess + thumbnail paths for the Triton ``preprocess`` model.

Every candidate turns encoded image bytes into the float32 CHW ResNet-50 tensor and a uint8
thumbnail of the whole image (long side <= 128). Each is timed single-threaded (per-image
median) and compared with torchvision's own transform, run in a separate interpreter that has
torch and torchvision (``--reference-python``):

    ResNet50_Weights.IMAGENET1K_V2.transforms()(
        ImageOps.exif_transpose(Image.open(path)).convert("RGB"))

Parity is reported as the max abs tensor difference, the cosine of the flattened tensors and,
when an ONNX model is given, the cosine and top-1 agreement of its logits. Inputs: the photos
in ``--images``, a generated 24-megapixel JPEG (plain and EXIF-rotated) and synthetic images in
every PIL mode the contract names.

Example:
    .venv/bin/python perf/decode_bench.py --images /work/shared/images \\
        --reference-python .venv-export/bin/python --markdown perf/out/decode.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import common  # noqa: F401 (puts the preprocess model's imaging module on sys.path)
import cv2
import numpy as np
from PIL import Image, ImageOps

from tricolor.imaging import (
    CROP_SIZE,
    EXIF_ORIENTATION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TRANSPOSE_FOR_ORIENTATION,
    resized_size,
)

THUMB_SIZE = 128
MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)
STD = np.array(IMAGENET_STD, dtype=np.float32)
SWAPS_AXES = {5, 6, 7, 8}
RGB_PALETTE = "FF0000 FF8000 FFFF00 80FF00 00FF00 00FF80 00FFFF 0080FF 0000FF 8000FF FF00FF FF0080"
RYB_PALETTE = "FE2712 FC600A FB9902 FCCC1A FEFE33 B2D732 66B032 347C98 0247FE 4424D6 8601AF C21460"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ONNX = REPO_ROOT / "model_repository" / "resnet50" / "1" / "model.onnx"

Pipeline = Callable[[bytes], tuple[np.ndarray, np.ndarray]]

# Runs in the reference interpreter: JSON {"paths": [...], "resize": int, "stub": bool} on
# stdin, writes an .npz of tensors (key = index) to argv[1], prints a JSON line of versions.
# "stub": the PyPI torchvision wheel is built for CUDA torch; beside a CPU-only torch its
# compiled ops cannot load and `import torchvision` dies registering fake kernels for
# torchvision::nms. Declaring those schemas first lets the pure-Python transforms import.
REFERENCE_SCRIPT = r"""
import json, sys
import numpy as np
import torch
from PIL import Image, ImageOps, __version__ as pil_version

job = json.load(sys.stdin)
if job["stub"]:
    _lib = torch.library.Library("torchvision", "DEF")
    for schema in ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
                   "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"):
        _lib.define(schema)
import torchvision
from torchvision.models import ResNet50_Weights
from torchvision.transforms._presets import ImageClassification

if job["resize"] == 232:
    transform = ResNet50_Weights.IMAGENET1K_V2.transforms()
else:
    transform = ImageClassification(crop_size=224, resize_size=job["resize"])
out = {}
for i, path in enumerate(job["paths"]):
    with Image.open(path) as im:
        rgb = ImageOps.exif_transpose(im).convert("RGB")
    out[str(i)] = transform(rgb).numpy()
np.savez(sys.argv[1], **out)
print(json.dumps({"torch": torch.__version__, "torchvision": torchvision.__version__,
                  "pillow": pil_version, "torchvision_ops_stubbed": job["stub"],
                  "transform": repr(transform).replace(chr(10), " ")}))
"""


# ---------------------------------------------------------------- geometry (torchvision's rules)


def crop_offsets(width: int, height: int, crop: int = CROP_SIZE) -> tuple[int, int]:
    """(left, top) of torchvision's ``CenterCrop`` (Python's round, as torchvision uses)."""
    return int(round((width - crop) / 2.0)), int(round((height - crop) / 2.0))


def centre_crop(hwc: np.ndarray, crop: int = CROP_SIZE) -> np.ndarray:
    """View of the centre ``crop`` x ``crop`` window of an HWC array."""
    left, top = crop_offsets(hwc.shape[1], hwc.shape[0], crop)
    return hwc[top : top + crop, left : left + crop]


def crop_box(width: int, height: int, short: int) -> tuple[float, float, float, float]:
    """Source window of the centre crop, for ``Image.resize(box=...)`` (resample 224 px only)."""
    new_w, new_h = resized_size(width, height, short)
    left, top = crop_offsets(new_w, new_h)
    sx, sy = width / new_w, height / new_h
    return left * sx, top * sy, (left + CROP_SIZE) * sx, (top + CROP_SIZE) * sy


def thumb_size(width: int, height: int, limit: int = THUMB_SIZE) -> tuple[int, int]:
    """Size of a thumbnail with long side ``limit`` (never upscaled), aspect kept."""
    if max(width, height) <= limit:
        return width, height
    if width >= height:
        return limit, max(1, round(height * limit / width))
    return max(1, round(width * limit / height)), limit


# ---------------------------------------------------------------------------- normalisation


class Normaliser:
    """uint8 HWC crop -> float32 CHW ``(x / 255 - mean) / std``, in several ways."""

    def __init__(self) -> None:
        levels = np.arange(256, dtype=np.float32) / np.float32(255)
        # the float32 operations torchvision does, tabulated per channel
        self.table = ((levels[None, :] - MEAN[:, None]) / STD[:, None]).astype(np.float32)
        std64 = STD.astype(np.float64)
        self.scale = (1.0 / (255.0 * std64)).astype(np.float32)
        self.offset = (-MEAN.astype(np.float64) / std64).astype(np.float32)

    def exact(self, hwc: np.ndarray, bgr: bool = False) -> np.ndarray:
        """Transpose the uint8 to CHW, then /255, -mean, /std in place (torchvision's ops)."""
        chw = hwc[:, :, ::-1].transpose(2, 0, 1) if bgr else hwc.transpose(2, 0, 1)
        x = chw.astype(np.float32, order="C")
        x /= np.float32(255)
        x -= MEAN[:, None, None]
        x /= STD[:, None, None]
        return x

    def exact_split(self, hwc: np.ndarray) -> np.ndarray:
        """As ``exact``, but de-interleave with ``cv2.split`` (SIMD) instead of a numpy copy."""
        out = np.empty((3, *hwc.shape[:2]), dtype=np.float32)
        for c, plane in enumerate(cv2.split(hwc)):
            view = out[c]
            view[...] = plane
            view /= np.float32(255)
            view -= MEAN[c]
            view /= STD[c]
        return out

    def fma(self, hwc: np.ndarray) -> np.ndarray:
        """Transpose the uint8 first, then one in-place multiply and one add (1 ulp off)."""
        x = hwc.transpose(2, 0, 1).astype(np.float32, order="C")
        x *= self.scale[:, None, None]
        x += self.offset[:, None, None]
        return x

    def fma_hwc(self, hwc: np.ndarray) -> np.ndarray:
        """Multiply-add in HWC, then ``np.ascontiguousarray`` of the float CHW view."""
        return np.ascontiguousarray((hwc * self.scale + self.offset).transpose(2, 0, 1))

    def lut(self, hwc: np.ndarray) -> np.ndarray:
        """Per-channel 256-entry table lookup (``np.take``) on the CHW uint8."""
        chw = np.ascontiguousarray(hwc.transpose(2, 0, 1))
        return np.stack([np.take(self.table[c], chw[c]) for c in range(3)])

    def exact_batch(self, batch: np.ndarray) -> np.ndarray:
        """[N, H, W, 3] uint8 -> [N, 3, H, W] float32, as ``exact``."""
        x = batch.transpose(0, 3, 1, 2).astype(np.float32, order="C")
        x /= np.float32(255)
        x -= MEAN[:, None, None]
        x /= STD[:, None, None]
        return x

    def fma_batch(self, batch: np.ndarray) -> np.ndarray:
        """[N, H, W, 3] uint8 -> [N, 3, H, W] float32, as ``fma``."""
        x = batch.transpose(0, 3, 1, 2).astype(np.float32, order="C")
        x *= self.scale[:, None, None]
        x += self.offset[:, None, None]
        return x

    def fma_hwc_batch(self, batch: np.ndarray) -> np.ndarray:
        """[N, H, W, 3] uint8 -> [N, 3, H, W] float32, as ``fma_hwc``."""
        return np.ascontiguousarray((batch * self.scale + self.offset).transpose(0, 3, 1, 2))


# -------------------------------------------------------------------------------- pipelines


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _rgb(im: Image.Image) -> Image.Image:
    """``convert("RGB")`` without the full copy Pillow makes when the mode is already RGB."""
    return im if im.mode == "RGB" else im.convert("RGB")


def _orientation(im: Image.Image) -> int:
    value = im.getexif().get(EXIF_ORIENTATION, 1)
    return value if value in TRANSPOSE_FOR_ORIENTATION else 1


def _pil_thumb(small: Image.Image, full_size: tuple[int, int], full: Image.Image) -> np.ndarray:
    """BOX thumbnail of the uncropped 232-px image; a tiny original is used as is."""
    size = thumb_size(*full_size)
    if size == full_size:
        return np.asarray(full)
    return np.asarray(small.resize(size, Image.Resampling.BOX))


def pil_reference_like(data: bytes, resize: int, norm: Normaliser) -> tuple[np.ndarray, ...]:
    """The reference's own calls: exif_transpose and convert both copy the full image."""
    im = ImageOps.exif_transpose(_open(data)).convert("RGB")
    small = im.resize(resized_size(*im.size, resize), Image.Resampling.BILINEAR)
    return norm.exact(centre_crop(np.asarray(small))), _pil_thumb(small, im.size, im)


def pil_exact(data: bytes, resize: int, norm: Normaliser) -> tuple[np.ndarray, ...]:
    """exif_transpose in place, convert only if needed, one resize to 232, numpy crop."""
    im = _open(data)
    ImageOps.exif_transpose(im, in_place=True)
    im = _rgb(im)
    small = im.resize(resized_size(*im.size, resize), Image.Resampling.BILINEAR)
    return norm.exact(centre_crop(np.asarray(small))), _pil_thumb(small, im.size, im)


def pil_box_thumbfull(data: bytes, resize: int, norm: Normaliser) -> tuple[np.ndarray, ...]:
    """Resample only the crop window (``box``) and thumbnail the full image (copy + BOX)."""
    im = ImageOps.exif_transpose(_open(data)).convert("RGB")
    crop = im.resize(
        (CROP_SIZE, CROP_SIZE), Image.Resampling.BILINEAR, box=crop_box(*im.size, resize)
    )
    thumb = im.copy()
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX)
    return norm.exact(np.asarray(crop)), np.asarray(thumb)


def pil_reducing_gap(
    data: bytes, resize: int, norm: Normaliser, gap: float = 3.0
) -> tuple[np.ndarray, ...]:
    """Like ``pil_exact`` but ``resize(reducing_gap=gap)``: integer box pre-reduce (any format)."""
    im = _open(data)
    ImageOps.exif_transpose(im, in_place=True)
    im = _rgb(im)
    size = resized_size(*im.size, resize)
    small = im.resize(size, Image.Resampling.BILINEAR, reducing_gap=gap)
    return norm.exact(centre_crop(np.asarray(small))), _pil_thumb(small, im.size, im)


def pil_draft(data: bytes, resize: int, norm: Normaliser, factor: int) -> tuple[np.ndarray, ...]:
    """JPEG DCT-domain downscale (``draft``) keeping the shorter side >= factor * resize.

    The resize runs in stored orientation over the exact source window that ``draft`` reports
    (its scaled size is rounded up), then the small image is EXIF-transposed. ``factor=0``
    skips ``draft`` and only moves the EXIF transpose after the resize.
    """
    im = _open(data)
    orientation = _orientation(im)
    stored = im.size
    box = None
    if factor:  # a no-op returning None for anything but JPEG/MPO
        drafted = im.draft("RGB", (factor * resize, factor * resize))
        if drafted is not None:
            box = drafted[1]
    im = _rgb(im)
    swap = orientation in SWAPS_AXES
    shown = (stored[1], stored[0]) if swap else stored
    new_w, new_h = resized_size(*shown, resize)
    small = im.resize(
        (new_h, new_w) if swap else (new_w, new_h), Image.Resampling.BILINEAR, box=box
    )
    if orientation != 1:
        small = small.transpose(TRANSPOSE_FOR_ORIENTATION[orientation])
    crop = norm.exact(centre_crop(np.asarray(small)))
    if thumb_size(*shown) == shown:  # tiny image: the whole decoded image, upright
        full = im.transpose(TRANSPOSE_FOR_ORIENTATION[orientation]) if orientation != 1 else im
        return crop, np.asarray(full)
    return crop, np.asarray(small.resize(thumb_size(*shown), Image.Resampling.BOX))


def _cv2_reduction(data: bytes, need: int) -> tuple[int, tuple[int, int]]:
    """Largest JPEG reduction (1/2/4/8) keeping the shorter side >= need, and the stored size."""
    with _open(data) as im:
        size, is_jpeg = im.size, im.format in ("JPEG", "MPO")
    scale = min(size) // need if need else 0
    for k in (8, 4, 2):
        if is_jpeg and scale >= k:
            return k, size
    return 1, size


CV2_READ = {
    1: cv2.IMREAD_COLOR_RGB,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def cv2_pipeline(
    data: bytes, resize: int, norm: Normaliser, interpolation: int, factor: int = 0
) -> tuple[np.ndarray, ...]:
    """``cv2.imdecode`` (EXIF applied by OpenCV) + ``cv2.resize``; reduced decode if factor."""
    buf = np.frombuffer(data, dtype=np.uint8)
    k, stored = _cv2_reduction(data, factor * resize) if factor else (1, None)
    img = cv2.imdecode(buf, CV2_READ[k])
    if img is None:
        raise ValueError("cv2.imdecode failed")
    bgr = k != 1  # the reduced flags have no RGB variant
    h, w = img.shape[:2]
    shown = (w, h)
    if stored is not None:  # target size from the full-resolution size, upright
        shown = stored if (stored[0] >= stored[1]) == (w >= h) else (stored[1], stored[0])
    small = cv2.resize(img, resized_size(*shown, resize), interpolation=interpolation)
    crop = norm.exact(centre_crop(small), bgr=bgr)
    size = thumb_size(*shown)
    thumb = img if size == shown else cv2.resize(small, size, interpolation=cv2.INTER_AREA)
    return crop, np.ascontiguousarray(thumb[:, :, ::-1]) if bgr else thumb


@dataclass(frozen=True)
class Candidate:
    """A decode + preprocess + thumbnail path under test."""

    name: str
    run: Pipeline
    summary: str


def build_candidates(resize: int, norm: Normaliser) -> list[Candidate]:
    """All candidate pipelines for one resize size."""

    def bind(fn: Callable[..., tuple[np.ndarray, ...]], **kw: object) -> Pipeline:
        return partial(fn, resize=resize, norm=norm, **kw)  # type: ignore[return-value]

    area, linear = cv2.INTER_AREA, cv2.INTER_LINEAR
    return [
        Candidate("pil_reference_like", bind(pil_reference_like), "a: reference calls (2 copies)"),
        Candidate("pil_exact", bind(pil_exact), "a: in-place EXIF, no RGB copy"),
        Candidate("pil_box_thumbfull", bind(pil_box_thumbfull), "a: box crop + full thumb"),
        Candidate("pil_late_exif", bind(pil_draft, factor=0), "a: EXIF after resize"),
        Candidate("pil_reducing_gap3", bind(pil_reducing_gap, gap=3.0), "a: reducing_gap=3"),
        Candidate("pil_draft_4x", bind(pil_draft, factor=4), "b: draft short>=4*232"),
        Candidate("pil_draft_2x", bind(pil_draft, factor=2), "b: draft short>=2*232"),
        Candidate("pil_draft_1x", bind(pil_draft, factor=1), "b: draft short>=232"),
        Candidate("cv2_area", bind(cv2_pipeline, interpolation=area), "c: imdecode + AREA"),
        Candidate("cv2_linear", bind(cv2_pipeline, interpolation=linear), "c: imdecode + LINEAR"),
        Candidate(
            "cv2_reduced_2x_area",
            bind(cv2_pipeline, interpolation=area, factor=2),
            "c: REDUCED short>=2*232 + AREA",
        ),
        Candidate(
            "cv2_reduced_1x_area",
            bind(cv2_pipeline, interpolation=area, factor=1),
            "c: REDUCED short>=232 + AREA",
        ),
    ]


# ----------------------------------------------------------------------------------- inputs


@dataclass
class Sample:
    """One encoded input image."""

    name: str
    path: Path
    group: str  # "photo" (timed), "big" (timed, 24 MP), "mode" (parity only)
    data: bytes = field(repr=False, default=b"")

    @property
    def is_jpeg(self) -> bool:
        return self.data[:3] == b"\xff\xd8\xff"


def _with_orientation(orientation: int) -> Image.Exif:
    """An EXIF block holding only an orientation tag."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return exif


def make_big_jpegs(source: Path, out_dir: Path) -> list[Path]:
    """A 6000x4000 q90 JPEG (upscaled photo + sensor-like noise, ~8 MB), plus an EXIF-6 copy."""
    plain, rotated = out_dir / "big_24mp.jpg", out_dir / "big_24mp_exif6.jpg"
    if plain.exists() and rotated.exists():
        return [plain, rotated]
    with Image.open(source) as im:
        base = ImageOps.exif_transpose(im).convert("RGB").resize((6000, 4000), Image.BICUBIC)
    noise = np.random.default_rng(0).normal(0.0, 10.0, (4000, 6000, 3)).astype(np.float32)
    pixels = np.clip(np.asarray(base, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    big = Image.fromarray(pixels)
    big.save(plain, "JPEG", quality=90)
    big.save(rotated, "JPEG", quality=90, exif=_with_orientation(6))
    return [plain, rotated]


def make_mode_samples(source: Path, out_dir: Path) -> list[Path]:
    """Images in every mode and container the contract names, plus EXIF orientations."""
    with Image.open(source) as im:
        full = ImageOps.exif_transpose(im).convert("RGB")
    base = full.copy()
    base.thumbnail((640, 640))
    gray = base.convert("L")
    alpha = Image.linear_gradient("L").resize(base.size)
    paletted = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    deep = Image.fromarray((np.asarray(gray, dtype=np.uint16) * 257).astype(np.uint16))
    rgba = base.copy()
    rgba.putalpha(alpha)
    la = gray.copy()
    la.putalpha(alpha)
    jobs: list[tuple[str, Image.Image, dict[str, object]]] = [
        ("mode_L.jpg", gray, {}),
        ("mode_CMYK.jpg", base.convert("CMYK"), {}),
        ("mode_P.png", paletted, {}),
        ("mode_P_transparent.gif", paletted, {"transparency": 0}),
        ("mode_RGBA.png", rgba, {}),
        ("mode_LA.png", la, {}),
        ("mode_I16.png", deep, {}),
        ("mode_1.png", base.convert("1"), {}),
        ("mode_RGB.webp", base, {"quality": 90}),
        ("mode_RGBA.webp", rgba, {"quality": 90}),
        ("jpeg_progressive.jpg", base, {"progressive": True, "quality": 90}),
        ("jpeg_444.jpg", base, {"subsampling": 0, "quality": 90}),
    ]
    jobs += [
        (f"jpeg_exif{o}.jpg", base, {"exif": _with_orientation(o), "quality": 90})
        for o in (3, 6, 8, 5)
    ]
    # full size, so that draft engages: a camera-style MPO and EXIF orientations 3 and 8
    mpo = {"format": "MPO", "save_all": True, "append_images": [gray], "quality": 90}
    jobs.append(("large_camera_mpo.jpg", full, mpo))
    jobs += [
        (f"large_jpeg_exif{o}.jpg", full, {"exif": _with_orientation(o), "quality": 90})
        for o in (3, 8)
    ]
    paths = []
    for name, image, options in jobs:
        path = out_dir / name
        image.save(path, **options)
        paths.append(path)
    return paths


def load_samples(images: Path, work: Path, with_big: bool, with_modes: bool) -> list[Sample]:
    """Photos from ``images``, then the generated 24 MP and mode samples."""
    photos = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise SystemExit(f"no images in {images}")
    samples = [Sample(p.name, p, "photo") for p in photos]
    largest = max(photos, key=lambda p: p.stat().st_size)
    landscape = [p for p in photos if _is_landscape(p)] or photos
    if with_big:
        big_source = max(landscape, key=lambda p: p.stat().st_size)
        samples += [Sample(p.name, p, "big") for p in make_big_jpegs(big_source, work)]
    if with_modes:
        samples += [Sample(p.name, p, "mode") for p in make_mode_samples(largest, work)]
    for sample in samples:
        sample.data = sample.path.read_bytes()
    return samples


def _is_landscape(path: Path) -> bool:
    with Image.open(path) as im:
        return im.size[0] > im.size[1]


# ----------------------------------------------------------------------- reference and model


def run_reference(python: str, samples: Sequence[Sample], resize: int) -> tuple[list, dict]:
    """Tensors from torchvision in the reference interpreter, in sample order, and versions."""
    paths = [str(s.path) for s in samples]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "reference.npz"
        for stub in (False, True):  # plain import first; the schema stub only if that fails
            done = subprocess.run(
                [python, "-c", REFERENCE_SCRIPT, str(out)],
                input=json.dumps({"paths": paths, "resize": resize, "stub": stub}),
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode == 0 or "torchvision::nms" not in done.stderr:
                break
        if done.returncode != 0:
            raise SystemExit(f"reference interpreter failed:\n{done.stderr[-3000:]}")
        with np.load(out) as npz:
            tensors = [npz[str(i)] for i in range(len(samples))]
    return tensors, json.loads(done.stdout.strip().splitlines()[-1])


@functools.cache
def onnx_session(onnx_path: Path):
    """One ONNX Runtime CPU session per model file, shared by every candidate's logits."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def logits_of(onnx_path: Path, tensors: Sequence[np.ndarray]) -> np.ndarray:
    """Logits of the ONNX model (ONNX Runtime, CPU) for a list of CHW tensors."""
    session = onnx_session(onnx_path)
    name = session.get_inputs()[0].name
    rows = [session.run(None, {name: t[None]})[0][0] for t in tensors]
    return np.stack(rows)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays, flattened, in float64."""
    a64, b64 = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64)))


def palette(hexes: str) -> np.ndarray:
    """12 x 3 float32 RGB palette from space-separated hex codes."""
    return np.array([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in hexes.split()], np.float32)


def colour_scores(thumb: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Mean Euclidean RGB distance from the thumbnail's pixels to each palette colour."""
    pixels = thumb.reshape(-1, 3).astype(np.float32)
    return np.sqrt(((pixels[:, None, :] - colours[None]) ** 2).sum(-1)).mean(0)


# ---------------------------------------------------------------------------------- timing


def time_candidates(
    candidates: Sequence[Candidate], samples: Sequence[Sample], repeats: int
) -> dict[str, dict[str, float]]:
    """Median seconds per (candidate, sample); candidates interleaved within each repeat."""
    times: dict[str, dict[str, list[float]]] = {c.name: {} for c in candidates}
    for sample in samples:
        gc.collect()
        for cand in candidates:
            cand.run(sample.data)  # warm-up
            times[cand.name][sample.name] = []
        for _ in range(repeats):
            for cand in candidates:
                start = time.perf_counter()
                cand.run(sample.data)
                times[cand.name][sample.name].append(time.perf_counter() - start)
    return {c: {s: statistics.median(v) for s, v in per.items()} for c, per in times.items()}


def time_call(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls (after one warm-up)."""
    fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


# --------------------------------------------------------------------------------- reports


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_cos(value: float) -> str:
    """Cosine with its distance from 1 readable."""
    return "1.0" if value == 1.0 else f"{value:.6f}"


@dataclass
class Outcome:
    """Outputs of one candidate on one sample."""

    tensor: np.ndarray | None
    thumb: np.ndarray | None
    error: str = ""


def main_report(args: argparse.Namespace) -> str:
    """Run everything and return the markdown report."""
    cv2.setNumThreads(1)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    norm = Normaliser()
    candidates = build_candidates(args.resize, norm)
    if args.only:
        candidates = [c for c in candidates if c.name in args.only.split(",")]
    samples = load_samples(Path(args.images), work, not args.no_big, not args.no_modes)
    print(f"{len(samples)} samples, {len(candidates)} candidates", file=sys.stderr)

    reference, versions = run_reference(args.reference_python, samples, args.resize)
    outcomes: dict[str, list[Outcome]] = {}
    for cand in candidates:
        rows = []
        for sample in samples:
            try:
                tensor, thumb = cand.run(sample.data)
                rows.append(Outcome(tensor, thumb))
            except Exception as exc:  # a candidate that cannot read a mode is a result
                rows.append(Outcome(None, None, f"{type(exc).__name__}: {exc}"[:80]))
        outcomes[cand.name] = rows

    onnx_path = Path(args.onnx) if args.onnx else None
    logits_ref = logits = None
    if onnx_path is not None and onnx_path.exists():
        checked = [i for i, s in enumerate(samples) if s.group in ("photo", "big")]
        logits_ref = logits_of(onnx_path, [reference[i] for i in checked])
        logits = {
            c.name: logits_of(
                onnx_path,
                [
                    outcomes[c.name][i].tensor
                    if outcomes[c.name][i].tensor is not None
                    else np.zeros_like(reference[i])
                    for i in checked
                ],
            )
            for c in candidates
        }
    timed = [s for s in samples if s.group in ("photo", "big")]
    medians = time_candidates(candidates, timed, args.repeats)

    parts = [header_section(args, samples, versions, onnx_path)]
    parts.append(
        summary_section(candidates, samples, reference, outcomes, medians, logits_ref, logits)
    )
    parts.append(modes_section(candidates, samples, reference, outcomes))
    parts.append(thumb_section(samples, outcomes, args.resize, args.repeats))
    parts.append(normalise_section(samples, outcomes, reference, norm, args.resize, args.repeats))
    if logits_ref is not None:
        cos = [cosine(a, b) for i, a in enumerate(logits_ref) for b in logits_ref[i + 1 :]]
        parts.append(
            "Baseline for the logit column: cosine of the ONNX logits between *different* "
            f"images: median {statistics.median(cos):.6f}, max {max(cos):.6f} "
            "(random weights: the logit cosine is a weak proxy; the tensor cosine is the real "
            "signal)."
        )
    return "\n\n".join(parts) + "\n"


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else the platform's machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header_section(
    args: argparse.Namespace, samples: Sequence[Sample], versions: dict, onnx: Path | None
) -> str:
    """Machine, versions and inputs."""
    counts = {g: sum(s.group == g for s in samples) for g in ("photo", "big", "mode")}
    load = os.getloadavg()
    big_mb = ", ".join(f"{len(s.data) / 1e6:.1f} MB" for s in samples if s.group == "big")
    return "\n".join(
        [
            f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- machine: {cpu_model()}, {os.cpu_count()} cores, "
            f"load average at end {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}",
            f"- python {platform.python_version()}, numpy {np.__version__}, "
            f"pillow {Image.__version__}, opencv {cv2.__version__} (cv2.setNumThreads(1))",
            f"- reference: torch {versions['torch']}, torchvision {versions['torchvision']}, "
            f"pillow {versions['pillow']}, ops stubbed: {versions['torchvision_ops_stubbed']}; "
            f"`{versions['transform']}`",
            f"- inputs: {counts['photo']} photos from `{args.images}`, {counts['big']} generated "
            f"24 MP JPEGs{f' ({big_mb})' if big_mb else ''}, {counts['mode']} synthetic "
            "mode/EXIF samples; "
            f"resize {args.resize}",
            f"- timing: per-image median of {args.repeats} runs (after a warm-up), bytes in "
            "memory -> float32 CHW tensor + uint8 thumbnail, one process, one thread",
            f"- logits: `{onnx}`" if onnx is not None and onnx.exists() else "- logits: no ONNX",
        ]
    )


def summary_section(
    candidates: Sequence[Candidate],
    samples: Sequence[Sample],
    reference: Sequence[np.ndarray],
    outcomes: dict[str, list[Outcome]],
    medians: dict[str, dict[str, float]],
    logits_ref: np.ndarray | None,
    logits: dict[str, np.ndarray] | None,
) -> str:
    """The main table: time and parity per candidate."""
    photo = [i for i, s in enumerate(samples) if s.group == "photo"]
    big = [i for i, s in enumerate(samples) if s.group == "big"]
    jpeg = [i for i in photo if samples[i].is_jpeg]
    base = sum(medians[candidates[0].name][samples[i].name] for i in photo)
    rows = []
    for cand in candidates:
        med = medians[cand.name]
        total = sum(med[samples[i].name] for i in photo)
        diffs, coss = [], []
        for i in photo + big:
            tensor = outcomes[cand.name][i].tensor
            diffs.append(float(np.abs(tensor - reference[i]).max()))
            coss.append(cosine(tensor, reference[i]))
        n_photo = len(photo)
        row: list[object] = [
            cand.name,
            cand.summary,
            f"{1000 * total:.1f}",
            f"{1000 * sum(med[samples[i].name] for i in jpeg):.1f}",
            *(f"{1000 * med[samples[i].name]:.0f}" for i in big),
            f"{base / total:.2f}x",
            f"{max(diffs[:n_photo]):.4f}",
            fmt_cos(min(coss[:n_photo])),
        ]
        if big:
            row += [f"{max(diffs[n_photo:]):.4f}", fmt_cos(min(coss[n_photo:]))]
        if logits_ref is not None and logits is not None:
            lc = [cosine(a, b) for a, b in zip(logits_ref, logits[cand.name], strict=True)]
            top1 = int((logits_ref.argmax(1) == logits[cand.name].argmax(1)).sum())
            row += [fmt_cos(min(lc)), f"{top1}/{len(lc)}"]
        rows.append(row)
    header = ["candidate", "what", f"{len(photo)} photos ms", f"{len(jpeg)} JPEGs ms"]
    header += [f"{samples[i].name} ms" for i in big]
    header += ["speed-up", "photos max abs diff", "photos min cos"]
    if big:
        header += ["24MP max diff", "24MP cos"]
    if logits_ref is not None:
        header += ["logit min cos", "top-1 equal"]
    note = (
        "Times: sum of per-image medians over the photos (and the JPEG subset); 24 MP: median "
        "per image. speed-up vs the first row. Diff/cos: float32 tensor vs torchvision."
    )
    return "### Decode + preprocess + thumbnail\n\n" + md_table(header, rows) + "\n\n" + note


def modes_section(
    candidates: Sequence[Candidate],
    samples: Sequence[Sample],
    reference: Sequence[np.ndarray],
    outcomes: dict[str, list[Outcome]],
) -> str:
    """Which candidates reproduce ``exif_transpose(...).convert("RGB")`` on every mode."""
    modes = [i for i, s in enumerate(samples) if s.group == "mode"]
    if not modes:
        return ""
    rows = []
    for cand in candidates:
        bad = []
        worst = 1.0
        for i in modes:
            out = outcomes[cand.name][i]
            if out.tensor is None:
                bad.append(f"{samples[i].name} (error)")
                continue
            cos = cosine(out.tensor, reference[i])
            worst = min(worst, cos)
            if cos < 0.999:
                bad.append(f"{samples[i].name} ({cos:.3f})")
        ok = len(modes) - len(bad)
        rows.append([cand.name, f"{ok}/{len(modes)}", fmt_cos(worst), ", ".join(bad) or "-"])
    names = ", ".join(samples[i].name for i in modes)
    return (
        "### Modes and EXIF (tensor cosine >= 0.999 vs torchvision)\n\n"
        + md_table(["candidate", "ok", "min cos", "failing"], rows)
        + f"\n\nSamples: {names}."
    )


def thumb_section(
    samples: Sequence[Sample], outcomes: dict[str, list[Outcome]], resize: int, repeats: int
) -> str:
    """Thumbnail methods: cost of the thumbnail step alone and dominant-colour agreement."""
    palettes = {"RGB": palette(RGB_PALETTE), "RYB": palette(RYB_PALETTE)}
    decoded = {}
    for i, s in enumerate(samples):
        im = _rgb(ImageOps.exif_transpose(_open(s.data)))
        im.load()
        small = im.resize(resized_size(*im.size, resize), Image.Resampling.BILINEAR)
        decoded[i] = (im, small)

    def full_thumbnail(im: Image.Image, small: Image.Image) -> np.ndarray:
        copy = im.copy()
        copy.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX)
        return np.asarray(copy)

    def full_resize_gap(im: Image.Image, small: Image.Image) -> np.ndarray:
        size = thumb_size(*im.size)
        return np.asarray(im.resize(size, Image.Resampling.BOX, reducing_gap=2.0))

    def from_small(im: Image.Image, small: Image.Image, method: Image.Resampling) -> np.ndarray:
        size = thumb_size(*im.size)
        return np.asarray(im) if size == im.size else np.asarray(small.resize(size, method))

    def from_small_cv2(im: Image.Image, small: Image.Image) -> np.ndarray:
        size = thumb_size(*im.size)
        arr = np.asarray(small)
        return np.asarray(im) if size == im.size else cv2.resize(arr, size, cv2.INTER_AREA)

    methods: dict[str, Callable[[Image.Image, Image.Image], np.ndarray]] = {
        "full: copy + thumbnail(BOX) (reference)": full_thumbnail,
        "full: resize(BOX, reducing_gap=2)": full_resize_gap,
        "232 image: resize BILINEAR": partial(from_small, method=Image.Resampling.BILINEAR),
        "232 image: resize BOX": partial(from_small, method=Image.Resampling.BOX),
        "232 image: cv2 INTER_AREA": from_small_cv2,
    }
    reference = {
        (i, k): colour_scores(full_thumbnail(*decoded[i]), p)
        for i in decoded
        for k, p in palettes.items()
    }
    photo = [i for i, s in enumerate(samples) if s.group == "photo"]
    big = [i for i, s in enumerate(samples) if s.group == "big"]
    rows = []
    for name, method in methods.items():
        photo_us = sum(time_call(partial(method, *decoded[i]), repeats) for i in photo)
        big_ms = [time_call(partial(method, *decoded[i]), max(3, repeats // 2)) for i in big]
        agree, regret = _agreement({i: method(*decoded[i]) for i in decoded}, reference, palettes)
        rows.append(
            [
                name,
                f"{1e6 * photo_us / len(photo):.0f}",
                *(f"{1000 * t:.1f}" for t in big_ms),
                agree,
                f"{regret:.2f}",
            ]
        )
    for cand_name in ("pil_draft_2x", "pil_draft_1x", "cv2_area", "cv2_reduced_2x_area"):
        if cand_name in outcomes:
            thumbs = {i: outcomes[cand_name][i].thumb for i in decoded}
            thumbs = {i: t for i, t in thumbs.items() if t is not None}
            agree, regret = _agreement(thumbs, reference, palettes)
            rows.append(
                [
                    f"{cand_name} pipeline thumbnail",
                    "-",
                    *("-" for _ in big),
                    agree,
                    f"{regret:.2f}",
                ]
            )
    header = ["thumbnail method", "photos us/img", *(f"{samples[i].name} ms" for i in big)]
    header += ["dominant RGB/RYB equal", "max regret"]
    note = (
        f"Time of the thumbnail step alone (the {resize} image is already made). Agreement: "
        "same dominant colour as the reference thumbnail on all samples (photos, 24 MP, "
        "modes); regret: worst score gap (RGB distance units, 0-441) between the chosen and "
        "the reference colour under the reference thumbnail's scores."
    )
    return "### Thumbnail (dominant colour)\n\n" + md_table(header, rows) + "\n\n" + note


def _agreement(
    thumbs: dict[int, np.ndarray],
    reference: dict[tuple[int, str], np.ndarray],
    palettes: dict[str, np.ndarray],
) -> tuple[str, float]:
    """'a/n, b/n' agreement per palette and the worst regret."""
    counts = []
    regret = 0.0
    for key, colours in palettes.items():
        same = 0
        for i, thumb in thumbs.items():
            ref_scores = reference[(i, key)]
            pick = int(colour_scores(thumb, colours).argmin())
            same += pick == int(ref_scores.argmin())
            regret = max(regret, float(ref_scores[pick] - ref_scores.min()))
        counts.append(f"{same}/{len(thumbs)}")
    return ", ".join(counts), regret


def normalise_section(
    samples: Sequence[Sample],
    outcomes: dict[str, list[Outcome]],
    reference: Sequence[np.ndarray],
    norm: Normaliser,
    resize: int,
    repeats: int,
) -> str:
    """Cost and exactness of uint8 crop -> float32 CHW variants, per image and batched."""
    photo = [i for i, s in enumerate(samples) if s.group == "photo"]
    crops = {}
    for i in photo:
        im = _rgb(ImageOps.exif_transpose(_open(samples[i].data)))
        small = im.resize(resized_size(*im.size, resize), Image.BILINEAR)
        crops[i] = np.ascontiguousarray(centre_crop(np.asarray(small)))
    exact = all(np.array_equal(norm.exact(crops[i]), reference[i]) for i in photo)
    batch = np.stack([crops[photo[j % len(photo)]] for j in range(32)])
    single: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "exact: uint8 -> CHW, astype, /255, -mean, /std in place": norm.exact,
        "exact, de-interleaved with cv2.split": norm.exact_split,
        "multiply-add: uint8 -> CHW, astype, *scale, +offset": norm.fma,
        "multiply-add in HWC float, then transpose": norm.fma_hwc,
        "256-entry table per channel (np.take)": norm.lut,
        "uint8 CHW only (no float)": lambda a: np.ascontiguousarray(a.transpose(2, 0, 1)),
        "uint8 HWC as is": lambda a: a,
    }
    batched: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "exact: uint8 -> CHW, astype, /255, -mean, /std in place": norm.exact_batch,
        "multiply-add: uint8 -> CHW, astype, *scale, +offset": norm.fma_batch,
        "multiply-add in HWC float, then transpose": norm.fma_hwc_batch,
    }
    rows = []
    reps = max(20, repeats * 10)
    for name, fn in single.items():
        us = statistics.median(time_call(partial(fn, crops[i]), reps) for i in photo) * 1e6
        if name.startswith("uint8"):
            diff, size = "n/a (normalise later)", 224 * 224 * 3
        else:
            diff = f"{max(float(np.abs(fn(crops[i]) - reference[i]).max()) for i in photo):.2e}"
            size = 224 * 224 * 3 * 4
        per_batch = "-"
        if name in batched:
            t = time_call(partial(batched[name], batch), max(5, repeats))
            per_batch = f"{1e6 * t / len(batch):.0f}"
        rows.append([name, f"{us:.0f}", per_batch, diff, f"{size // 1024} KiB"])
    header = ["normalise variant", "us/img", "us/img in batch of 32", "max abs diff", "bytes/img"]
    note = (
        "Input: the exact uint8 224x224x3 crop; diff vs the torchvision tensor "
        f"(`exact` bit-equal to torchvision on all photos: {exact}); batch: one call on "
        "[32, 224, 224, 3], divided by 32."
    )
    return "### Normalisation\n\n" + md_table(header, rows) + "\n\n" + note


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="folder of photos (jpg/png/bmp/...)")
    parser.add_argument("--reference-python", required=True, help="python with torch + torchvision")
    parser.add_argument("--onnx", default=str(DEFAULT_ONNX), help="ONNX model for logit parity")
    parser.add_argument("--resize", type=int, default=232, help="shorter side before the crop")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per image")
    parser.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "decode_bench"))
    parser.add_argument("--only", default="", help="comma-separated candidate names")
    parser.add_argument("--no-big", action="store_true", help="skip the 24 MP JPEGs")
    parser.add_argument("--no-modes", action="store_true", help="skip the mode samples")
    parser.add_argument("--markdown", default="", help="also write the report here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    report = main_report(args)
    print(report)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(report)


if __name__ == "__main__":
    main()
