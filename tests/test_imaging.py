"""preprocess's pure functions, without a server."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import encode
from imaging import (
    CROP_SIZE,
    ImageRejected,
    Limits,
    crop_box,
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
    [((640, 480), (309, 232)), ((480, 640), (232, 309)), ((232, 232), (232, 232))],
)
def test_resized_size_follows_torchvision(size, expected) -> None:
    assert resized_size(*size, 232) == expected


@pytest.mark.parametrize("size", [(640, 480), (300, 800), (1920, 1080), (225, 4000)])
def test_cropped_window_resize_is_within_two_levels_of_resize_then_crop(size) -> None:
    image = photo(*size)
    new_width, new_height = resized_size(*size, 232)
    left, top = round((new_width - CROP_SIZE) / 2), round((new_height - CROP_SIZE) / 2)
    full = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
    expected = np.asarray(full.crop((left, top, left + CROP_SIZE, top + CROP_SIZE)), dtype=int)
    box = crop_box(*size, 232)
    window = np.asarray(image.resize((CROP_SIZE,) * 2, Image.Resampling.BILINEAR, box=box))
    assert np.abs(window.astype(int) - expected).max() <= 2


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "LA", "1"])
def test_every_mode_becomes_rgb_as_pil_converts_it(mode: str) -> None:
    source = photo(300, 200, mode if mode != "I;16" else "L")
    if mode == "I;16":
        source = Image.fromarray(np.asarray(source).astype(np.uint16) * 257)
    image_format = "JPEG" if mode == "CMYK" else "PNG" if mode != "P" else "GIF"
    data = encode(source, image_format)
    decoded = open_image(data, LIMITS)
    assert decoded.mode == "RGB" and decoded.size == (300, 200)
    with Image.open(io.BytesIO(data)) as reference:
        assert np.array_equal(np.asarray(decoded), np.asarray(reference.convert("RGB")))


def test_exif_orientation_is_applied() -> None:
    image = photo(400, 200)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = open_image(encode(image, "JPEG", exif=exif.tobytes()), LIMITS)
    assert decoded.size == (200, 400)


@pytest.mark.parametrize(
    ("data", "reason", "words"),
    [
        (b"", "empty", "empty"),
        (b"hello world, not an image", "undecodable", "not a recognised image format"),
        (encode(photo(640, 480), "JPEG")[:2000], "undecodable", "truncated"),
        (encode(Image.new("1", (30000, 30000)), "PNG"), "too_many_pixels", "megapixels"),
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
