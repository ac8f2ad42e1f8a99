"""Hostile input, end to end through the real server: each gets a correct answer or a clear
error naming the row and the reason, within a time bound, in bounded memory, and the server
stays ready. Also: isolation under a mixed load, the refusal metrics, and what is exposed.
"""

from __future__ import annotations

import io
import struct
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from tests.helpers import (
    encode,
    generated_images,
    infer,
    memory_kib,
    photo_bytes,
    png_bomb,
    reference_outputs,
    scrape,
    stub_processes,
    wait_for,
    wait_for_metric,
)
from tricolor.client import TricolorClient, image_input
from tricolor.imaging import IMAGENET_STD, Limits

pytestmark = pytest.mark.integration

REQUEST_BOUND_S = 30.0  # the client gives up after this: no hostile input may take longer
# one level of 255 in the normalised tensor
ONE_LEVEL = 1 / 255 / min(IMAGENET_STD) + 1e-6


# --- the hostile inputs ---------------------------------------------------------------------


@cache
def cat() -> Image.Image:
    """A real photo (scikit-image's chelsea, 451 x 300): asymmetric, so rotations show."""
    return Image.open(io.BytesIO(photo_bytes()["chelsea.png"])).convert("RGB")


def jpeg_header_only() -> bytes:
    """Every marker segment of a real JPEG up to and including SOS, no entropy-coded data."""
    data = encode(cat(), "JPEG")
    start_of_scan = data.index(b"\xff\xda")
    length = struct.unpack(">H", data[start_of_scan + 2 : start_of_scan + 4])[0]
    return data[: start_of_scan + 2 + length]


def gradient(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.stack(np.broadcast_arrays(x, y, (x + y) / 2), axis=-1).astype(np.uint8)
    return Image.fromarray(pixels)


def sixteen_bit_png() -> bytes:
    gray = np.asarray(cat().convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(gray), "PNG")


def rgba_png() -> bytes:
    image = cat().convert("RGBA")
    alpha = np.full(image.size[::-1], 255, dtype=np.uint8)
    alpha[:, : image.size[0] // 3] = 0  # a transparent third
    image.putalpha(Image.fromarray(alpha))
    return encode(image, "PNG")


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; rotate 90 degrees clockwise to display
    return encode(cat(), "JPEG", quality=95, exif=exif.tobytes())


# id -> (bytes factory, None for "answered" or (reason, words the error must contain))
HOSTILE = {
    "empty": (lambda: b"", ("empty", "image is empty")),
    "random-bytes": (
        lambda: np.random.default_rng(6).bytes(4096),
        ("undecodable", "not a recognised image format"),
    ),
    "text": (
        lambda: b"Lorem ipsum dolor sit amet, ceci n'est pas une image.\n" * 20,
        ("undecodable", "not a recognised image format"),
    ),
    "truncated-jpeg": (
        lambda: encode(cat(), "JPEG")[:3000],
        ("undecodable", "truncated"),
    ),
    "jpeg-header-only": (jpeg_header_only, ("undecodable", "cannot decode image")),
    "png-bomb-30000x30000": (
        png_bomb,
        ("too_many_pixels", "image is 900.0 megapixels, above the limit of 50.0 megapixels"),
    ),
    "strip-5000x1": (lambda: encode(gradient(5000, 1), "PNG"), None),
    "jpeg-24-megapixels": (lambda: encode(gradient(6000, 4000), "JPEG", quality=85), None),
    "jpeg-cmyk": (lambda: encode(cat().convert("CMYK"), "JPEG"), None),
    "png-16-bit": (sixteen_bit_png, None),
    "gif-palette": (lambda: encode(cat().convert("P"), "GIF"), None),
    "png-rgba": (rgba_png, None),
    "webp": (lambda: encode(cat(), "WEBP", quality=80), None),
    "bmp": (lambda: encode(cat(), "BMP"), None),
    "jpeg-exif-rotated": (exif_rotated_jpeg, None),
}


REJECTED = "tricolor_rejected_images_total"
REASONS = {refusal[0] for _, refusal in HOSTILE.values() if refusal is not None}
ANSWERED = [case for case, (_, refusal) in HOSTILE.items() if refusal is None]
# how far each answered input's served tensor may be from torchvision's (default: bit-exact)
REFERENCE_TOLERANCE = {
    "strip-5000x1": 2 * ONE_LEVEL,  # only the window the crop keeps is resampled
    "jpeg-exif-rotated": ONE_LEVEL,  # rotated after the resize instead of before
    "jpeg-24-megapixels": 0.2,  # drafted: libjpeg decodes it at a quarter of its size
}


# --- helpers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bounded(server) -> TricolorClient:
    """A client that gives up after REQUEST_BOUND_S: a hang fails the test, not CI."""
    with TricolorClient(server.grpc_url, timeout_s=REQUEST_BOUND_S) as tricolor_client:
        yield tricolor_client


def served_tensors(grpc_client, images: list[bytes]) -> np.ndarray:
    """`preprocess` called directly: the FP32 tensors resnet50 would get."""
    outputs = ("preprocessed_image",)
    return infer(
        grpc_client, grpcclient, images, "preprocess", outputs, client_timeout=REQUEST_BOUND_S
    )["preprocessed_image"]


def preprocess_stubs(server) -> list[int]:
    pids = [pid for pid, model in stub_processes(server).items() if model == "preprocess"]
    assert pids, "no preprocess stub found"
    return pids


# --- each hostile input, end to end ---------------------------------------------------------


@pytest.fixture(scope="module")
def torchvision_tensors(tmp_path_factory) -> dict[str, np.ndarray]:
    """The contract's oracle for every answered input: torchvision's transform on
    `ImageOps.exif_transpose(Image.open(f)).convert("RGB")`, in the export venv."""
    folder = tmp_path_factory.mktemp("hostile")
    paths = [folder / case for case in ANSWERED]
    for path in paths:
        path.write_bytes(HOSTILE[path.name][0]())
    return dict(zip(ANSWERED, reference_outputs(paths)["tensors"], strict=True))


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_gets_an_answer_or_a_clear_error(
    server, grpc_client, bounded, torchvision_tensors, case: str
) -> None:
    factory, refusal = HOSTILE[case]
    image = factory()
    stubs = preprocess_stubs(server)
    refused = {kind: scrape(server, REJECTED, reason=kind) for kind in REASONS}
    baseline = {pid: memory_kib(pid) for pid in stubs}
    for pid in stubs:  # reset the peak-RSS counter (VmHWM) to now
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    result = bounded.classify_one(image, case)  # within REQUEST_BOUND_S, or an error
    peak_growth_mib = max(memory_kib(pid, "VmHWM") - baseline[pid] for pid in stubs) / 1024

    if refusal is None:
        assert result.error is None, result.error
        assert len(result.labels) == 5 and result.color_rgb.startswith("#")
        # the answer is the right one: the served tensor is torchvision's on PIL's RGB
        served, expected = served_tensors(grpc_client, [image])[0], torchvision_tensors[case]
        cosine = float(served.ravel() @ expected.ravel())
        cosine /= float(np.linalg.norm(served) * np.linalg.norm(expected))
        worst = float(np.abs(served - expected).max())
        assert worst <= REFERENCE_TOLERANCE.get(case, 1e-6) and cosine >= 0.9999, (worst, cosine)
    else:
        reason, words = refusal
        assert result.error is not None
        # the client shows the server's reason alone: no ensemble prefix, no row of one
        assert words in result.error and "row 0" not in result.error, result.error
        # the reason is the refusal's own series: it moves by this one image, no other does
        wait_for_metric(server, REJECTED, refused[reason] + 1, reason=reason)
        others = {kind: scrape(server, REJECTED, reason=kind) for kind in REASONS - {reason}}
        assert others == {kind: refused[kind] for kind in others}, (reason, others)
    if case == "png-bomb-30000x30000":
        # refused from the header: decoding it would take 900 MB (2.7 GB as RGB)
        assert peak_growth_mib < 32, peak_growth_mib
    if case == "strip-5000x1":
        # only the crop window is resampled: no 1.16 M x 232 intermediate image
        assert peak_growth_mib < 32, peak_growth_mib
    if case == "jpeg-24-megapixels":
        assert peak_growth_mib < 400, peak_growth_mib  # 72 MB of RGB, plus PIL's copies
    assert bounded.is_ready()


def test_exif_orientation_is_applied_by_the_server(grpc_client) -> None:
    tagged = exif_rotated_jpeg()
    with Image.open(io.BytesIO(tagged)) as stored:  # the pixels as stored, sideways
        upright = stored.convert("RGB").transpose(Image.Transpose.ROTATE_270)
    assert upright.size == (300, 451)
    served_tagged, served_upright, served_sideways = served_tensors(
        grpc_client, [tagged, encode(upright, "PNG"), encode(cat(), "PNG")]
    )
    # the rotation is applied to the resized image (cheaper): at most one level of 255 apart
    np.testing.assert_allclose(served_tagged, served_upright, atol=ONE_LEVEL)
    assert np.abs(served_tagged - served_sideways).max() > 1.0  # orientation made a difference


def test_a_batch_of_64_images_in_one_request(bounded) -> None:
    unique = [*photo_bytes().values(), *generated_images().values()]
    images = [unique[row % len(unique)] for row in range(64)]
    alone = [bounded.classify_one(image) for image in unique]
    together = bounded.classify_batch(images, [str(row) for row in range(64)])
    assert len(together) == 64
    for row, result in enumerate(together):
        expected = alone[row % len(unique)]
        assert result.class_ids[0] == expected.class_ids[0], row
        np.testing.assert_allclose(result.scores, expected.scores, rtol=1e-4, atol=1e-5)
        assert result.color_rgb == expected.color_rgb


@pytest.mark.parametrize("model", ["classify", "preprocess"])
def test_a_request_with_zero_rows_is_refused_clearly(grpc_client, bounded, model: str) -> None:
    """Triton itself refuses a [0, 1] BYTES input before any model runs."""
    empty = image_input([], grpcclient)
    assert empty.shape() == [0, 1]
    with pytest.raises(InferenceServerException) as refused:
        grpc_client.infer(model, [empty], client_timeout=REQUEST_BOUND_S)
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "expected 1 string elements for inference input 'IMAGE'" in refused.value.message()
    assert "got 0" in refused.value.message()
    assert bounded.is_ready()


# --- isolation: good and bad interleaved, batched together ----------------------------------


def test_good_and_bad_requests_interleaved_from_many_threads(server, bounded) -> None:
    good = {**photo_bytes(), **generated_images()}
    bad = [b"", b"not an image", encode(cat(), "JPEG")[:2000], png_bomb(), jpeg_header_only()]
    expected = {name: bounded.classify_one(image, name) for name, image in good.items()}
    decoded_before = scrape(server, "tricolor_decoded_images_total")
    preprocess_before = bounded.inference_statistics(["preprocess"])["preprocess"]
    work = []
    for round_ in range(4):
        for index, (name, image) in enumerate(good.items()):
            work.append((name, image))
            work.append((f"bad-{round_}-{index}", bad[(round_ + index) % len(bad)]))
    # 16 threads against 2 preprocess instances: the dynamic batcher mixes good and bad
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda item: bounded.classify_one(item[1], item[0]), work))
    for (name, _), result in zip(work, results, strict=True):
        if name.startswith("bad-"):
            assert (
                result.error is not None
                and "ensemble" not in result.error
                and "row 0" not in result.error
            ), result
            continue
        assert result.error is None, (name, result.error)
        assert result.class_ids == expected[name].class_ids, name
        np.testing.assert_allclose(result.scores, expected[name].scores, rtol=1e-4, atol=1e-5)
        assert result.color_rgb == expected[name].color_rgb
    good_count = sum(not name.startswith("bad-") for name, _ in work)
    wait_for_metric(server, "tricolor_decoded_images_total", decoded_before + good_count)
    # this test's own traffic: every request reached preprocess once (a one-row request is one
    # inference, refused or not), and the batcher really put several requests in one execute
    ran = wait_for(
        lambda: bounded.inference_statistics(["preprocess"])["preprocess"] - preprocess_before,
        lambda delta: delta.inferences >= len(work),
        f"preprocess statistics counting {len(work)} requests",
    )
    assert ran.inferences == len(work), ran
    assert ran.executions < ran.inferences, ran
    assert bounded.is_ready()


# --- metrics: each refusal reason has its own series ----------------------------------------


def test_each_refusal_reason_increments_its_own_counter(server, bounded) -> None:
    max_bytes = Limits().max_encoded_bytes
    by_reason = {
        "empty": b"",
        "too_large": b"\xff\xd8\xff\xe0" + bytes(max_bytes),
        "too_many_pixels": png_bomb(),
        "undecodable": b"garbage",
    }
    name = "tricolor_rejected_images_total"
    sent = {"empty": 1, "too_large": 1, "too_many_pixels": 1, "undecodable": 2}
    before = {reason: scrape(server, name, reason=reason) for reason in by_reason}
    labelled = {"reason": "undecodable", "model": "preprocess", "version": "1"}
    labelled_before = scrape(server, name, **labelled)
    for reason, image in by_reason.items():
        for _ in range(sent[reason]):
            assert bounded.classify_one(image, reason).error is not None
    for reason, count in sent.items():  # each reason's series moves by its own count, exactly
        wait_for_metric(server, name, before[reason] + count, reason=reason)
    # the series carry the model's own labels: that one moved by both undecodable images
    wait_for_metric(server, name, labelled_before + sent["undecodable"], **labelled)


# --- exposure: what the default launcher opens ----------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_model_control_is_refused_over_the_api_by_default(server, bounded, protocol) -> None:
    module, url = (
        (grpcclient, server.grpc_url) if protocol == "grpc" else (httpclient, server.http_url)
    )
    raw = module.InferenceServerClient(url)
    try:
        for action in (raw.unload_model, raw.load_model):
            with pytest.raises(InferenceServerException) as refused:
                action("classify")
            assert "explicit model load / unload is not allowed" in refused.value.message()
        assert raw.is_model_ready("classify") and raw.is_model_ready("preprocess")
    finally:
        raw.close()
    assert bounded.is_ready()


def listening_addresses(port: int) -> list[str]:
    """Local addresses of the LISTEN sockets on `port` (IPv4 and IPv6), from /proc/net."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: TCP_LISTEN
                found.append(address)
    return found


def is_loopback(hex_address: str) -> bool:
    if len(hex_address) == 8:  # IPv4, little-endian: 127.x.x.x ends in 7F
        return hex_address.endswith("7F")
    words = [hex_address[i : i + 8] for i in range(0, 32, 8)]  # IPv6, 4 little-endian words
    v4_mapped = words[:2] == ["00000000", "00000000"] and words[2] == "FFFF0000"
    return (v4_mapped and words[3].endswith("7F")) or words == ["00000000"] * 3 + ["01000000"]


def test_every_port_listens_on_loopback_only(server) -> None:
    ports = server.options.ports
    for port in (ports.http, ports.grpc, ports.metrics):
        addresses = listening_addresses(port)
        assert addresses, f"nothing listens on {port}"
        assert all(is_loopback(address) for address in addresses), (port, addresses)
