"""Property-based fuzzing of preprocess's decode-and-transform function (no server).

Over arbitrary bytes and over mutations (bit flips, truncations, insertions, deletions,
"interesting" integers written over header fields) of small valid encodings in every format
the contract names, `imaging.preprocess` either returns a well-formed `Preprocessed` or
raises `ImageRejected` with a known reason: never another exception, never a hang
(pytest-timeout bounds the whole test; no per-example deadline, which a loaded machine would
trip). The examples are the same on every run (conftest's `deterministic` profile);
`--hypothesis-profile=explore` draws new ones.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.helpers import encode
from tricolor.imaging import CROP_SIZE, ImageRejected, Limits, Preprocessed, preprocess

RESIZE_SIZE, THUMBNAIL_SIZE = 232, 64
LIMITS = Limits()
REASONS = {"empty", "too_large", "too_many_pixels", "undecodable"}
# on the profile conftest loads: the same examples every run, no example database
FUZZ = settings(
    max_examples=250,
    # no per-example deadline: on a loaded two-core machine a decode's time is the machine's,
    # not the code's; a hang is caught by pytest-timeout (pyproject's `timeout`)
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _scene(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x * y) % 256], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8))


def _seeds() -> dict[str, bytes]:
    """Small valid encodings: every format and mode the contract names."""
    rgb = _scene(40, 24)
    exif = Image.Exif()
    exif[0x0112] = 6
    sixteen = Image.fromarray(np.arange(24 * 40, dtype=np.uint16).reshape(24, 40) * 60)
    return {
        "jpeg": encode(rgb, "JPEG", quality=80),
        "jpeg-progressive": encode(rgb, "JPEG", progressive=True),
        "jpeg-exif": encode(rgb, "JPEG", exif=exif.tobytes()),
        "jpeg-cmyk": encode(rgb.convert("CMYK"), "JPEG"),
        "jpeg-gray": encode(rgb.convert("L"), "JPEG"),
        "png": encode(rgb, "PNG"),
        "png-rgba": encode(rgb.convert("RGBA"), "PNG"),
        "png-16bit": encode(sixteen, "PNG"),
        "png-palette": encode(rgb.convert("P"), "PNG"),
        "gif": encode(rgb.convert("P"), "GIF"),
        "webp": encode(rgb, "WEBP", quality=70),
        "webp-lossless": encode(rgb.convert("RGBA"), "WEBP", lossless=True),
        "bmp": encode(rgb, "BMP"),
        "tiff": encode(rgb, "TIFF"),
    }


SEEDS = _seeds()
INTERESTING = [
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\x00\x00",
    b"\xff\xff",
    b"\x7f\xff",
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\x7f\xff\xff\xff",
    b"\x00\x01\x00\x00",
]


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        # headers are where parsers trust the input most: aim there half the time
        position = draw(
            st.one_of(st.integers(0, min(63, len(data) - 1)), st.integers(0, len(data) - 1))
        )
        operation = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "integer"]))
        if operation == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "truncate":
            del data[position:]
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif operation == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        else:
            value = draw(st.sampled_from(INTERESTING))
            data[position : position + len(value)] = value
    return bytes(data)


def check(data: bytes) -> None:
    """The property: a well-formed result or the project's own error, nothing else."""
    try:
        result = preprocess(data, RESIZE_SIZE, THUMBNAIL_SIZE, LIMITS)
    except ImageRejected as refused:
        assert refused.reason in REASONS, refused.reason
        assert str(refused)
        return
    assert isinstance(result, Preprocessed)
    assert result.crop.shape == (CROP_SIZE, CROP_SIZE, 3) and result.crop.dtype == np.uint8
    thumbnail = result.thumbnail
    assert thumbnail.dtype == np.uint8 and thumbnail.ndim == 3 and thumbnail.shape[2] == 3
    assert 1 <= min(thumbnail.shape[:2]) and max(thumbnail.shape[:2]) <= THUMBNAIL_SIZE


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_seed_is_accepted(name: str) -> None:
    """The mutations start from images preprocess accepts."""
    result = preprocess(SEEDS[name], RESIZE_SIZE, THUMBNAIL_SIZE, LIMITS)
    assert result.crop.shape == (CROP_SIZE, CROP_SIZE, 3)


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(
    st.sampled_from(
        [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF", b"BM", b"II*\x00", b"MM\x00*"]
    ),
    st.binary(max_size=512),
)
def test_format_magic_followed_by_arbitrary_bytes(magic: bytes, tail: bytes) -> None:
    """Past the format sniffing: every plugin's header parser gets garbage."""
    check(magic + tail)


@settings(FUZZ, max_examples=600)
@given(mutated_images())
def test_mutated_valid_images(data: bytes) -> None:
    check(data)
