"""preprocess's pure functions, without a server."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.helpers import encode, png_bomb
from tricolor.imaging import (
    CROP_SIZE,
    ImageRejected,
    Limits,
    normalise,
    open_image,
    pad_thumbnails,
    preprocess,
    resized_size,
)

LIMITS = Limits()


def photo(width: int, height: int, mode: str = "RGB") -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8)).convert(mode)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((640, 480), (309, 232)),
        ((480, 640), (232, 309)),
        ((232, 232), (232, 232)),
        # 232 * 800 / 300 = 618.67: torchvision truncates (int), it does not round
        ((300, 800), (232, 618)),
    ],
)
def test_resized_size_follows_torchvision(size, expected) -> None:
    assert resized_size(*size, 232) == expected


def reference_crop(image: Image.Image, resize_size: int = 232) -> np.ndarray:
    """torchvision's Resize + CenterCrop on a PIL image, spelt out with the same PIL calls
    (torchvision's `_compute_resized_output_size`: the shorter side becomes `resize_size`, the
    longer one `int(resize_size * long / short)`, written here, not taken from the product)."""
    width, height = image.size
    if width <= height:
        new_width, new_height = resize_size, int(resize_size * height / width)
    else:
        new_width, new_height = int(resize_size * width / height), resize_size
    full = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
    left, top = round((new_width - CROP_SIZE) / 2), round((new_height - CROP_SIZE) / 2)
    return np.asarray(full.crop((left, top, left + CROP_SIZE, top + CROP_SIZE)))


@pytest.mark.parametrize("size", [(640, 480), (300, 800), (1920, 1080), (225, 4000)])
@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_crop_is_bit_exact_without_draft(size, image_format) -> None:
    data = encode(photo(*size), image_format)
    expected = reference_crop(Image.open(io.BytesIO(data)).convert("RGB"))
    result = preprocess(data, 232, 64, LIMITS, draft_factor=0)
    np.testing.assert_array_equal(result.crop, expected)


def test_very_elongated_images_resample_only_the_kept_window() -> None:
    image = photo(6000, 60)  # resizes to 23200 x 232: over MAX_RESIZED_PIXELS
    result = preprocess(encode(image, "PNG"), 232, 64, LIMITS)
    assert np.abs(result.crop.astype(int) - reference_crop(image)).max() <= 2
    assert result.thumbnail.shape == (1, 64, 3)


def test_draft_decodes_large_jpegs_reduced_and_stays_close() -> None:
    data = encode(photo(4000, 3000), "JPEG", quality=90)
    assert open_image(data, LIMITS, draft_to=464).image.size == (1000, 750)
    assert open_image(encode(photo(900, 700), "JPEG"), LIMITS, draft_to=464).box is None
    expected = reference_crop(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    drafted = preprocess(data, 232, 64, LIMITS, draft_factor=2).crop.astype(int)
    assert np.abs(drafted - expected).mean() < 1.0 and np.abs(drafted - expected).max() <= 12


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "LA", "1"])
def test_every_mode_becomes_rgb_as_pil_converts_it(mode: str) -> None:
    source = photo(300, 200, mode if mode != "I;16" else "L")
    if mode == "I;16":
        source = Image.fromarray(np.asarray(source).astype(np.uint16) * 257)
    image_format = "JPEG" if mode == "CMYK" else "PNG" if mode != "P" else "GIF"
    data = encode(source, image_format)
    decoded = open_image(data, LIMITS).image
    assert decoded.mode == "RGB" and decoded.size == (300, 200)
    with Image.open(io.BytesIO(data)) as reference:
        assert np.array_equal(np.asarray(decoded), np.asarray(reference.convert("RGB")))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    image = photo(400, 250)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(image, "PNG", exif=exif.tobytes())
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    result = preprocess(data, 232, 64, LIMITS)
    # rotating after the resize rather than before moves a value by at most one level
    difference = np.abs(result.crop.astype(int) - reference_crop(upright))
    assert difference.max() <= 1
    # 400 x 250 stored: orientations 5-8 swap the sides, so the thumbnail stands upright
    assert upright.size == ((250, 400) if orientation >= 5 else (400, 250))
    assert result.thumbnail.shape[:2] == ((64, 40) if orientation >= 5 else (40, 64))


@pytest.mark.parametrize(
    ("data", "reason", "words"),
    [
        (b"", "empty", "empty"),
        (b"hello world, not an image", "undecodable", "not a recognised image format"),
        (encode(photo(640, 480), "JPEG")[:2000], "undecodable", "truncated"),
        (png_bomb(), "too_many_pixels", "megapixels"),
        (encode(Image.new("1", (8000, 7000)), "PNG"), "too_many_pixels", "8000 x 7000"),
    ],
    ids=["empty", "text", "truncated", "bomb", "over-limit"],
)
def test_hostile_inputs_are_refused_with_a_reason(data: bytes, reason: str, words: str) -> None:
    with pytest.raises(ImageRejected) as refused:
        preprocess(data, 232, 64, LIMITS)
    assert refused.value.reason == reason
    assert words in str(refused.value)


def test_encoded_size_limit_is_checked_before_decoding() -> None:
    with pytest.raises(ImageRejected, match="max_encoded_bytes") as refused:
        open_image(b"\xff\xd8" + bytes(100), Limits(max_encoded_bytes=50))
    assert refused.value.reason == "too_large"


def test_preprocess_outputs_crop_and_whole_image_thumbnail() -> None:
    result = preprocess(encode(photo(640, 160), "PNG"), 232, 64, LIMITS)
    assert result.crop.shape == (224, 224, 3) and result.crop.dtype == np.uint8
    assert result.thumbnail.shape == (16, 64, 3)


def test_normalise_matches_the_reference_formula() -> None:
    crops = [np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = ((crops[0] / 255.0 - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(normalise(crops)[0], expected, atol=1e-5)
    assert normalise([]).shape == (0, 3, 224, 224)


def test_thumbnails_are_padded_with_their_sizes() -> None:
    padded, sizes = pad_thumbnails([np.ones((10, 64, 3), np.uint8), np.ones((64, 5, 3))], 64)
    assert padded.shape == (2, 64, 64, 3)
    assert sizes.tolist() == [[10, 64], [64, 5]]
    assert padded[0, 10:].sum() == 0 and padded[1, :, 5:].sum() == 0
