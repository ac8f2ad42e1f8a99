"""The `classify` ensemble end to end on a real tritonserver, over gRPC and HTTP."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from tricolor.client import TricolorClient
from tricolor.colours import RGB_PALETTE, RYB_PALETTE
from tricolor.imaging import Limits, open_image
from tricolor.scores import softmax
from tricolor.settings import MODEL_REPOSITORY

from conftest import (
    ARTIFACTS,
    SHARED_IMAGES,
    encode,
    generated_images,
    infer,
    photo_bytes,
    png_bomb,
    reference_outputs,
    scrape,
    start_server,
)

pytestmark = pytest.mark.integration

LABELS = (MODEL_REPOSITORY / "postprocess" / "labels.txt").read_text().splitlines()
SHARED_PHOTOS = [
    "dali_monkey-653705_1920.jpg",
    "coral_cat_720p.jpg",
    "coral_parrot.jpg",
    "rossed_pelican.jpg",
    "triton_car.jpg",
    "coral_grace_hopper.bmp",
    "skimage_rocket.png",
]


def parameter(model: str, name: str) -> str:
    config = (MODEL_REPOSITORY / model / "config.pbtxt").read_text()
    match = re.search(rf'key: "{name}", value: {{ string_value: "([^"]*)" }}', config)
    assert match, f"{model}/config.pbtxt has no parameter {name}"
    return match.group(1)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_every_contract_output_for_several_images_in_one_request(
    protocol: str, grpc_client, http_client
) -> None:
    client, module = (grpc_client, grpcclient) if protocol == "grpc" else (http_client, httpclient)
    images = list(generated_images().values())[:3]
    outputs = infer(client, module, images)
    top_k = int(parameter("postprocess", "top_k"))
    for name in ("LABELS", "SCORES", "CLASS_IDS"):
        assert outputs[name].shape == (3, top_k), name
    assert outputs["SCORES"].dtype == np.float32
    assert outputs["CLASS_IDS"].dtype == np.int32
    for name in ("COLOR_RGB", "COLOR_RYB", "COLOR_RGB_NAME", "COLOR_RYB_NAME", "WEIGHTS"):
        assert outputs[name].shape == (3, 1), name
    for row in range(3):
        scores = outputs["SCORES"][row]
        assert np.all(np.diff(scores) <= 0) and 0 <= scores.min() and scores.max() <= 1
        labels = [label.decode() for label in outputs["LABELS"][row]]
        assert labels == [LABELS[index] for index in outputs["CLASS_IDS"][row]]
        rgb, ryb = outputs["COLOR_RGB"][row][0].decode(), outputs["COLOR_RYB"][row][0].decode()
        assert rgb in RGB_PALETTE.hex_codes and ryb in RYB_PALETTE.hex_codes
        assert re.fullmatch(r"#[0-9A-F]{6}", rgb) and re.fullmatch(r"#[0-9A-F]{6}", ryb)
        name = outputs["COLOR_RGB_NAME"][row][0].decode()
        assert RGB_PALETTE.names[RGB_PALETTE.hex_codes.index(rgb)] == name


def test_grpc_and_http_give_the_same_answer(grpc_client, http_client) -> None:
    images = list(photo_bytes().values())[:2]
    over_grpc = infer(grpc_client, grpcclient, images)
    over_http = infer(http_client, httpclient, images)
    np.testing.assert_array_equal(over_grpc["CLASS_IDS"], over_http["CLASS_IDS"])
    np.testing.assert_allclose(over_grpc["SCORES"], over_http["SCORES"], rtol=1e-6)
    np.testing.assert_array_equal(over_grpc["COLOR_RGB"], over_http["COLOR_RGB"])


def test_concurrent_requests_all_get_their_own_answer(client: TricolorClient) -> None:
    images = {**photo_bytes(), **generated_images()}
    names, payloads = list(images), list(images.values())
    alone = [
        client.classify_one(payload, name) for name, payload in zip(names, payloads, strict=True)
    ]
    together = client.classify_many(payloads * 3, names * 3, concurrency=8)
    for index, result in enumerate(together):
        expected = alone[index % len(alone)]
        assert result.error is None
        assert result.path == expected.path
        assert result.class_ids == expected.class_ids
        np.testing.assert_allclose(result.scores, expected.scores, rtol=1e-5, atol=1e-6)
        assert (result.color_rgb, result.color_ryb) == (expected.color_rgb, expected.color_ryb)


def oracle_probabilities(
    tensors: np.ndarray, session: ort.InferenceSession, second_look_below: float
) -> tuple[np.ndarray, np.ndarray]:
    """What `classify` should answer, computed outside Triton from reference tensors."""
    probabilities = softmax(session.run(["logits"], {"input": tensors})[0])
    second_look = probabilities.max(axis=1) < second_look_below
    if second_look.any():
        flipped = np.ascontiguousarray(tensors[second_look][..., ::-1])
        flipped_probabilities = softmax(session.run(["logits"], {"input": flipped})[0])
        probabilities[second_look] = (probabilities[second_look] + flipped_probabilities) / 2
    return probabilities, second_look


@pytest.fixture(scope="module")
def parity_images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("parity")
    paths = [SHARED_IMAGES / name for name in SHARED_PHOTOS if (SHARED_IMAGES / name).exists()]
    for name, payload in {**photo_bytes(), **generated_images()}.items():
        (folder / name).write_bytes(payload)
        paths.append(folder / name)
    return paths


@pytest.fixture(scope="module")
def onnx_session() -> ort.InferenceSession:
    return ort.InferenceSession(
        str(MODEL_REPOSITORY / "resnet50" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )


def test_preprocess_matches_torchvision_reference(grpc_client, parity_images) -> None:
    reference = reference_outputs(parity_images, int(parameter("preprocess", "resize_size")))
    served = infer(
        grpc_client,
        grpcclient,
        [path.read_bytes() for path in parity_images],
        model="preprocess",
        outputs=("preprocessed_image",),
    )["preprocessed_image"]
    assert served.shape == reference["tensors"].shape
    draft_to = int(parameter("preprocess", "draft_factor")) * int(
        parameter("preprocess", "resize_size")
    )
    report = {}
    for path, tensor, expected in zip(parity_images, served, reference["tensors"], strict=True):
        drafted = open_image(path.read_bytes(), Limits(), draft_to).box is not None
        cosine = float(tensor.ravel() @ expected.ravel())
        cosine /= float(np.linalg.norm(tensor) * np.linalg.norm(expected))
        worst = float(np.abs(tensor - expected).max())
        report[path.name] = {"drafted": drafted, "max_abs_diff": worst, "cosine": cosine}
        if drafted:  # decoded at reduced scale by libjpeg: close, not identical
            assert cosine >= 0.9999 and worst < 0.2, (path.name, report[path.name])
        else:  # everything else is torchvision's arithmetic on torchvision's pixels
            assert worst <= 1e-6, (path.name, report[path.name])
    (ARTIFACTS / "parity_tensors.json").write_text(json.dumps(report, indent=2))
    assert any(entry["drafted"] for entry in report.values())


def test_served_scores_match_onnxruntime_on_reference_tensors(
    client: TricolorClient, parity_images, onnx_session
) -> None:
    reference = reference_outputs(parity_images, int(parameter("preprocess", "resize_size")))
    expected, expected_second_look = oracle_probabilities(
        reference["tensors"], onnx_session, float(parameter("postprocess", "second_look_below"))
    )
    payloads = [path.read_bytes() for path in parity_images]
    results = client.classify_many(payloads, [path.name for path in parity_images])
    for row, result in enumerate(results):
        assert result.error is None, result.error
        assert result.class_ids[0] == int(expected[row].argmax()), result.path
        served = np.array(result.scores)
        oracle = expected[row][result.class_ids]
        cosine = served @ oracle / (np.linalg.norm(served) * np.linalg.norm(oracle))
        assert cosine >= 0.999, (result.path, cosine)
        assert result.second_look == bool(expected_second_look[row])


def solid(hex_code: str, size: tuple[int, int] = (320, 240)) -> bytes:
    return encode(Image.new("RGB", size, hex_code), "PNG")


@pytest.mark.parametrize("palette", [RGB_PALETTE, RYB_PALETTE], ids=["rgb", "ryb"])
def test_solid_palette_colours_are_their_own_dominant_colour(client, palette) -> None:
    results = client.classify_many([solid(code) for code in palette.hex_codes], palette.names)
    served = [
        result.color_rgb if palette is RGB_PALETTE else result.color_ryb for result in results
    ]
    assert served == list(palette.hex_codes)


def plain_rule(pixels: np.ndarray, hex_codes: tuple[str, ...]) -> str:
    """The seed's rule, written the slow obvious way: one colour at a time."""
    best_code, best_score = "", float("inf")
    flat = pixels.reshape(-1, 3).astype(np.float64)
    for code in hex_codes:
        colour = np.array([int(code[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float64)
        score = float(np.mean(np.sqrt(((flat - colour) ** 2).sum(axis=1))))
        if score < best_score:
            best_code, best_score = code, score
    return best_code


def test_striped_images_get_the_colour_the_rule_predicts(client: TricolorClient) -> None:
    stripes = [
        ("#FF0000", "#0000FF", 3),  # three red stripes to one blue: red
        ("#00FFFF", "#FFFF00", 1),  # half cyan, half yellow, compared on both palettes
        ("#202020", "#F0F0F0", 2),  # greys: whatever the rule says
        ("#8000FF", "#FF8000", 5),
    ]
    images, expected_rgb, expected_ryb = [], [], []
    for first, second, ratio in stripes:
        pixels = np.zeros((240, 360, 3), dtype=np.uint8)
        for column in range(0, 360, 30):
            code = second if (column // 30) % (ratio + 1) == ratio else first
            pixels[:, column : column + 30] = [int(code[i : i + 2], 16) for i in (1, 3, 5)]
        images.append(encode(Image.fromarray(pixels), "PNG"))
        expected_rgb.append(plain_rule(pixels, RGB_PALETTE.hex_codes))
        expected_ryb.append(plain_rule(pixels, RYB_PALETTE.hex_codes))
    results = client.classify_many(images, [str(i) for i in range(len(images))])
    assert [result.color_rgb for result in results] == expected_rgb
    assert [result.color_ryb for result in results] == expected_ryb


def test_bad_rows_fail_their_request_naming_row_and_reason(client: TricolorClient) -> None:
    good = list(generated_images().values())[0]
    truncated = good[: len(good) // 2]
    with pytest.raises(InferenceServerException) as refused:
        client.infer_batch([good, b"", b"definitely not an image", truncated])
    message = refused.value.message()
    assert "row 1: image is empty" in message
    assert "row 2: not a recognised image format" in message
    assert "row 3: cannot decode image" in message and "truncated" in message
    assert "row 0" not in message


def test_good_requests_batched_with_bad_ones_still_succeed(client: TricolorClient) -> None:
    good = list(generated_images().values())
    expected = [client.classify_one(payload, str(i)) for i, payload in enumerate(good)]
    hostile = [b"", b"\x89PNG\r\n\x1a\nbroken", png_bomb()]
    mixed = [payload for pair in zip(good, hostile + hostile[:2], strict=True) for payload in pair]
    results = client.classify_many(mixed, [str(i) for i in range(len(mixed))], concurrency=8)
    for index, result in enumerate(results):
        if index % 2 == 0:
            assert result.error is None, result.error
            assert result.class_ids == expected[index // 2].class_ids
        else:
            # the reason alone: a one-image request has no row to name (client strips it)
            assert result.error is not None and not result.error.startswith(("row", "in ensemble"))
    assert "megapixels" in results[5].error and "max_decoded_pixels" in results[5].error
    assert client.is_ready()


def test_oversize_encoded_image_is_refused_before_decoding(client: TricolorClient) -> None:
    limit = int(parameter("preprocess", "max_encoded_bytes"))
    oversize = b"\xff\xd8\xff\xe0" + bytes(limit)
    result = client.classify_one(oversize, "oversize.jpg")
    assert result.error is not None
    assert result.error.startswith("image is ") and "max_encoded_bytes" in result.error
    assert client.is_ready()


def test_metrics_endpoint_counts_requests_and_refusals(server, client: TricolorClient) -> None:
    successes = scrape(server, "nv_inference_request_success", model="classify")
    decoded = scrape(server, "tricolor_decoded_images_total")
    refused = scrape(server, "tricolor_rejected_images_total", reason="undecodable")
    assert client.classify_one(solid("#00FF00"), "green.png").error is None
    assert client.classify_one(b"garbage", "garbage.bin").error is not None
    assert scrape(server, "nv_inference_request_success", model="classify") == successes + 1
    assert scrape(server, "tricolor_decoded_images_total") == decoded + 1
    assert scrape(server, "tricolor_rejected_images_total", reason="undecodable") == refused + 1


@pytest.fixture(scope="module")
def controllable_server():
    """A second server whose postprocess the tests reload with other parameters."""
    running = start_server("tritonserver-second-look.log", model_control="explicit")
    yield running
    running.stop()


def reload_postprocess(server, **parameters: str) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as control:
        config = control.get_model_config("postprocess", as_json=True)["config"]
        for key, value in parameters.items():
            config["parameters"][key] = {"string_value": value}
        control.load_model("postprocess", config=json.dumps(config))
        control.load_model("classify")


@pytest.mark.parametrize("threshold", [0.0, 1.0, None], ids=["off", "every-image", "some"])
def test_second_look_averages_the_flipped_image(
    controllable_server, parity_images, onnx_session, threshold
) -> None:
    """Checked against ONNX Runtime on the served tensors, so the BLS arithmetic is exact."""
    payloads = [path.read_bytes() for path in parity_images]
    with grpcclient.InferenceServerClient(controllable_server.grpc_url) as raw:
        tensors = infer(raw, grpcclient, payloads, "preprocess", ("preprocessed_image",))[
            "preprocessed_image"
        ]
    single_look, _ = oracle_probabilities(tensors, onnx_session, 0.0)
    if threshold is None:  # halfway through the images' own confidences: a mixed batch
        threshold = float(np.median(single_look.max(axis=1)))
    reload_postprocess(controllable_server, second_look_below=str(threshold))
    expected, expected_second_look = oracle_probabilities(tensors, onnx_session, threshold)
    with TricolorClient(controllable_server.grpc_url) as client:
        results = client.classify_batch(payloads, [path.name for path in parity_images])
    assert [result.second_look for result in results] == expected_second_look.tolist()
    for row, result in enumerate(results):
        assert result.class_ids == np.argsort(-expected[row], kind="stable")[:5].tolist()
        np.testing.assert_allclose(result.scores, expected[row][result.class_ids], atol=1e-5)
    if expected_second_look.any():  # the flip moved the scores more than the tolerance
        assert np.abs(expected - single_look).max() > 1e-3


def test_second_look_failure_fails_only_the_requests_that_needed_it(controllable_server) -> None:
    reload_postprocess(
        controllable_server, second_look_below="1.0", second_look_model="no_such_model"
    )
    with TricolorClient(controllable_server.grpc_url) as client:
        failed = client.classify_one(solid("#FF0000"), "red.png")
        assert failed.error is not None and "second look failed" in failed.error
        reload_postprocess(controllable_server, second_look_below="0")
        assert client.classify_one(solid("#FF0000"), "red.png").error is None
        assert client.is_ready()
