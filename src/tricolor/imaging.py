"""Decode one encoded image and reproduce torchvision's ResNet-50 reference transform.

Pure functions (no Triton): `model.py` calls them per row, the tests import them directly.
The reference is `ResNet50_Weights.IMAGENET1K_V2.transforms()` on
`ImageOps.exif_transpose(Image.open(f)).convert("RGB")`: torchvision resizes a PIL image with
PIL's own antialiased bilinear filter, so the same PIL calls give the same pixels.

Two measured shortcuts (perf/studies/DECODE.md): a JPEG whose shorter side is at least
`draft_factor` x 2 x `resize_size` is decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself
(`Image.draft`), keeping at least `draft_factor` x `resize_size` pixels on the shorter side;
and the EXIF rotation is applied to the small resized image instead of the decoded one.
Everything else is bit-exact with torchvision; those two stay within a few levels of 255.
A very elongated image (a 5000 x 1 strip would resize to 1.16 M x 232) is not resized whole:
only the window the centre crop keeps is resampled, within 2 levels of the full resize.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

CROP_SIZE = 224
DEFAULT_DRAFT_FACTOR = 2
# above this many resized pixels (a very long, thin image) only the cropped window is resampled
MAX_RESIZED_PIXELS = 4_000_000
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# per channel, broadcast over [N, 3, H, W]; applied in torchvision's order for exact values
_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
_STD = np.asarray(IMAGENET_STD, dtype=np.float32)[:, None, None]
EXIF_ORIENTATION = 0x0112
# what `ImageOps.exif_transpose` does for each EXIF orientation
TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageRejected(ValueError):
    """An image tricolor refuses; `reason` is a short machine-readable label for metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    """Safety limits, checked before any pixel is decoded."""

    max_encoded_bytes: int = 32 * 1024 * 1024
    max_decoded_pixels: int = 50_000_000


def upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """(width, height) as stored -> as shown once EXIF `orientation` is applied (5-8 swap)."""
    width, height = size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


@dataclass(frozen=True)
class Decoded:
    """An RGB image as stored (before its EXIF orientation), maybe reduced by `draft`."""

    image: Image.Image
    full_size: tuple[int, int]  # (width, height) as stored, at full resolution
    box: tuple[float, float, float, float] | None  # the whole picture in reduced pixels
    orientation: int  # EXIF orientation, 1 when there is none or it is invalid

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) at full resolution once the orientation is applied."""
        return upright_size(self.full_size, self.orientation)


@dataclass(frozen=True)
class Preprocessed:
    crop: np.ndarray  # uint8 [224, 224, 3]: the centre crop after the reference resize
    thumbnail: np.ndarray  # uint8 [h, w, 3], long side <= the thumbnail size


def resized_size(width: int, height: int, resize_size: int) -> tuple[int, int]:
    """torchvision's `Resize(int)`: the shorter side becomes `resize_size`, aspect kept."""
    if width <= height:
        return resize_size, int(resize_size * height / width)
    return int(resize_size * width / height), resize_size


# What PIL's decoders raise on corrupt input (found by tests/unit/test_fuzz.py and PIL's own
# OSS-Fuzz history): each becomes an "undecodable" refusal, never a failed batch.
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
    MemoryError,
)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def open_image(data: bytes, limits: Limits, draft_to: int = 0) -> Decoded:
    """Decode `data` into RGB, refusing what is unsafe before any pixel is decoded.

    With `draft_to` > 0, a JPEG is decoded at the smallest 1/2^k scale whose sides both stay
    at least `draft_to` pixels.
    """
    if len(data) == 0:
        raise ImageRejected("empty", "image is empty (0 bytes)")
    if len(data) > limits.max_encoded_bytes:
        raise ImageRejected(
            "too_large",
            f"image is {len(data):,} bytes, above the limit of {limits.max_encoded_bytes:,} "
            "(max_encoded_bytes)",
        )
    limit = f"the limit of {limits.max_decoded_pixels / 1e6:.1f} megapixels (max_decoded_pixels)"
    try:
        with warnings.catch_warnings():
            # PIL warns about corrupt metadata (EXIF, TIFF tags) and carries on: no per-request
            # noise in the server log, and the same outcome whatever the global warning filter
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > limits.max_decoded_pixels:
                raise ImageRejected(
                    "too_many_pixels",
                    f"image is {width} x {height} = {width * height / 1e6:.1f} megapixels, "
                    f"above {limit}",
                )
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            drafted = image.draft("RGB", (draft_to, draft_to)) if draft_to else None
            box = drafted[1] if drafted is not None and image.size != (width, height) else None
            image = image.convert("RGB") if image.mode != "RGB" else image
            image.load()
            return Decoded(
                image=image,
                full_size=(width, height),
                box=box,
                orientation=orientation if orientation in TRANSPOSE_FOR_ORIENTATION else 1,
            )
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # PIL's own guard fires inside `Image.open` for the largest headers (over twice
        # Image.MAX_IMAGE_PIXELS), before the size is visible here; its message has the count
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(declared.group(1)) / 1e6:.1f} megapixels" if declared else "too large"
        raise ImageRejected("too_many_pixels", f"image is {size}, above {limit}") from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected("undecodable", "not a recognised image format") from exc
    except _DECODE_ERRORS as exc:
        raise ImageRejected("undecodable", f"cannot decode image: {_describe(exc)}") from exc


def preprocess(
    data: bytes,
    resize_size: int,
    thumbnail_size: int,
    limits: Limits,
    draft_factor: int = DEFAULT_DRAFT_FACTOR,
) -> Preprocessed:
    """Decode one image; return the uint8 centre crop and a thumbnail of the whole image."""
    decoded = open_image(data, limits, draft_to=draft_factor * resize_size)
    new_width, new_height = resized_size(*decoded.upright_size, resize_size)
    left = int(round((new_width - CROP_SIZE) / 2.0))  # torchvision's CenterCrop
    top = int(round((new_height - CROP_SIZE) / 2.0))
    # the pixels are decoded (`open_image` loads them): what fails from here on is our own code
    if new_width * new_height > MAX_RESIZED_PIXELS:
        crop, thumbnail = _window(decoded, (new_width, new_height), (left, top))
    else:
        resized = _resize_upright(decoded, (new_width, new_height))
        crop = np.asarray(resized)[top : top + CROP_SIZE, left : left + CROP_SIZE]
        thumbnail = resized
    thumbnail = shrink_to(thumbnail, thumbnail_size)
    return Preprocessed(crop=np.asarray(crop), thumbnail=np.asarray(thumbnail))


def _resize_upright(decoded: Decoded, size: tuple[int, int]) -> Image.Image:
    """The whole image resized to `size` (upright); the EXIF rotation is done on the result."""
    swapped = decoded.orientation in (5, 6, 7, 8)
    resized = decoded.image.resize(
        (size[1], size[0]) if swapped else size, Image.Resampling.BILINEAR, box=decoded.box
    )
    transpose = TRANSPOSE_FOR_ORIENTATION.get(decoded.orientation)
    return resized.transpose(transpose) if transpose is not None else resized


def _window(
    decoded: Decoded, size: tuple[int, int], corner: tuple[int, int]
) -> tuple[Image.Image, Image.Image]:
    """Crop and thumbnail of a very elongated image without materialising its full resize.

    PIL resamples only the source window the crop keeps (`box`): within 2 levels of resizing
    everything (its fixed-point weights round differently), for a fraction of the memory.
    """
    transpose = TRANSPOSE_FOR_ORIENTATION.get(decoded.orientation)
    upright = decoded.image.transpose(transpose) if transpose is not None else decoded.image
    scale_x, scale_y = upright.width / size[0], upright.height / size[1]
    left, top = corner
    box = (
        left * scale_x,
        top * scale_y,
        (left + CROP_SIZE) * scale_x,
        (top + CROP_SIZE) * scale_y,
    )
    crop = upright.resize((CROP_SIZE, CROP_SIZE), Image.Resampling.BILINEAR, box=box)
    return crop, upright


def shrink_to(image: Image.Image, long_side: int) -> Image.Image:
    """Area-average `image` so its long side is at most `long_side` (each side >= 1 pixel)."""
    width, height = image.size
    scale = long_side / max(width, height)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BOX)


def normalise(crops: list[np.ndarray]) -> np.ndarray:
    """uint8 crops [224, 224, 3] -> float32 [N, 3, 224, 224], in torchvision's arithmetic."""
    if not crops:
        return np.zeros((0, 3, CROP_SIZE, CROP_SIZE), dtype=np.float32)
    tensors = np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32, order="C")
    tensors /= np.float32(255)
    tensors -= _MEAN
    tensors /= _STD
    return tensors


def pad_thumbnails(thumbnails: list[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack thumbnails of different shapes into [N, size, size, 3] plus their [N, 2] (h, w)."""
    batch = np.zeros((len(thumbnails), size, size, 3), dtype=np.uint8)
    shapes = np.zeros((len(thumbnails), 2), dtype=np.int32)
    for row, thumbnail in enumerate(thumbnails):
        height, width = thumbnail.shape[:2]
        batch[row, :height, :width] = thumbnail
        shapes[row] = (height, width)
    return batch, shapes
