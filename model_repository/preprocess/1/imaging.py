"""Decode one encoded image and reproduce torchvision's ResNet-50 reference transform.

Pure functions (no Triton): `model.py` calls them per row, the tests import them directly.
The reference is `ResNet50_Weights.IMAGENET1K_V2.transforms()` on
`ImageOps.exif_transpose(Image.open(f)).convert("RGB")`: torchvision resizes a PIL image with
PIL's own antialiased bilinear filter, so doing the same in PIL is exact. Only the 224 x 224
window that the centre crop keeps is resampled (PIL's `box`), which gives the same pixels as
resizing the whole image and cropping, for less work.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

CROP_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (x / 255 - mean) / std as one multiply-add per value
_SCALE = (1.0 / (255.0 * np.asarray(IMAGENET_STD))).astype(np.float32)
_OFFSET = (np.asarray(IMAGENET_MEAN) / np.asarray(IMAGENET_STD)).astype(np.float32)


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


@dataclass(frozen=True)
class Preprocessed:
    crop: np.ndarray  # uint8 [224, 224, 3]: the centre crop after the reference resize
    thumbnail: np.ndarray  # uint8 [h, w, 3], long side <= the thumbnail size


def resized_size(width: int, height: int, resize_size: int) -> tuple[int, int]:
    """torchvision's `Resize(int)`: the shorter side becomes `resize_size`, aspect kept."""
    if width <= height:
        return resize_size, int(resize_size * height / width)
    return int(resize_size * width / height), resize_size


def crop_box(width: int, height: int, resize_size: int) -> tuple[float, float, float, float]:
    """The source-pixel window that becomes the 224 x 224 centre crop after the resize."""
    new_width, new_height = resized_size(width, height, resize_size)
    left = int(round((new_width - CROP_SIZE) / 2.0))
    top = int(round((new_height - CROP_SIZE) / 2.0))
    scale_x, scale_y = width / new_width, height / new_height
    return (
        left * scale_x,
        top * scale_y,
        (left + CROP_SIZE) * scale_x,
        (top + CROP_SIZE) * scale_y,
    )


def open_image(data: bytes, limits: Limits) -> Image.Image:
    """Decode `data` into an RGB image, EXIF orientation applied, refusing what is unsafe."""
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
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > limits.max_decoded_pixels:
                raise ImageRejected(
                    "too_many_pixels",
                    f"image is {width} x {height} = {width * height / 1e6:.1f} megapixels, "
                    f"above {limit}",
                )
            image = ImageOps.exif_transpose(image)
            return image.convert("RGB")
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # PIL's own guard fires inside `Image.open` for the largest headers
        raise ImageRejected("too_many_pixels", f"image is above {limit}: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected("undecodable", "not a recognised image format") from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise ImageRejected("undecodable", f"cannot decode image: {exc}") from exc


def preprocess(data: bytes, resize_size: int, thumbnail_size: int, limits: Limits) -> Preprocessed:
    """Decode one image; return the uint8 centre crop and a thumbnail of the whole image."""
    image = open_image(data, limits)
    width, height = image.size
    try:
        crop = image.resize(
            (CROP_SIZE, CROP_SIZE),
            Image.Resampling.BILINEAR,
            box=crop_box(width, height, resize_size),
        )
        thumbnail = image.copy()
        thumbnail.thumbnail((thumbnail_size, thumbnail_size), Image.Resampling.BOX)
    except (OSError, ValueError, MemoryError) as exc:
        raise ImageRejected("undecodable", f"cannot resize image: {exc}") from exc
    return Preprocessed(crop=np.asarray(crop), thumbnail=np.asarray(thumbnail))


def normalise(crops: list[np.ndarray]) -> np.ndarray:
    """uint8 crops [224, 224, 3] -> float32 [N, 3, 224, 224]: /255, ImageNet mean and std."""
    if not crops:
        return np.zeros((0, 3, CROP_SIZE, CROP_SIZE), dtype=np.float32)
    normalised = np.stack(crops).astype(np.float32) * _SCALE - _OFFSET
    return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2))


def pad_thumbnails(thumbnails: list[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack thumbnails of different shapes into [N, size, size, 3] plus their [N, 2] (h, w)."""
    batch = np.zeros((len(thumbnails), size, size, 3), dtype=np.uint8)
    shapes = np.zeros((len(thumbnails), 2), dtype=np.int32)
    for row, thumbnail in enumerate(thumbnails):
        height, width = thumbnail.shape[:2]
        batch[row, :height, :width] = thumbnail
        shapes[row] = (height, width)
    return batch, shapes
