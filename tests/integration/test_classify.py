"""The `classify` ensemble end to end on a real tritonserver, over gRPC and HTTP."""

from __future__ import annotations

import copy
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import scipy.special
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from tests.helpers import (
    ARTIFACTS,
    WAIT_S,
    encode,
    generated_images,
    infer,
    photo_bytes,
    photo_jpegs,
    png_bomb,
    reference_outputs,
    scrape,
    start_server,
    wait_for,
    wait_for_metric,
)
from tricolor.client import ModelTimes, TricolorClient
from tricolor.colours import RGB_PALETTE, RYB_PALETTE
from tricolor.settings import MODEL_REPOSITORY

pytestmark = pytest.mark.integration

LABELS = (MODEL_REPOSITORY / "postprocess" / "labels.txt").read_text().splitlines()


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
    for name in ("COLOR_RGB_SHARES", "COLOR_RYB_SHARES"):
        assert outputs[name].shape == (3, 12) and outputs[name].dtype == np.float32, name
        assert np.all(outputs[name] >= 0) and np.all(outputs[name].sum(axis=1) <= 1 + 1e-6)
    assert outputs["SECOND_LOOK"].shape == (3, 1) and outputs["SECOND_LOOK"].dtype == np.bool_
    for row in range(3):
        scores = outputs["SCORES"][row]
        assert np.all(np.diff(scores) <= 0) and 0 <= scores.min() and scores.max() <= 1
        labels = [label.decode() for label in outputs["LABELS"][row]]
        assert labels == [LABELS[index] for index in outputs["CLASS_IDS"][row]]
        rgb, ryb = outputs["COLOR_RGB"][row][0].decode(), outputs["COLOR_RYB"][row][0].decode()
        assert rgb in RGB_PALETTE.hex_codes and ryb in RYB_PALETTE.hex_codes
        assert re.fullmatch(r"#[0-9A-F]{6}", rgb) and re.fullmatch(r"#[0-9A-F]{6}", ryb)
        rgb_name = outputs["COLOR_RGB_NAME"][row][0].decode()
        ryb_name = outputs["COLOR_RYB_NAME"][row][0].decode()
        assert RGB_PALETTE.names[RGB_PALETTE.hex_codes.index(rgb)] == rgb_name
        assert RYB_PALETTE.names[RYB_PALETTE.hex_codes.index(ryb)] == ryb_name


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
    """What `classify` should answer, computed outside Triton from reference tensors (scipy's
    softmax in float64, not the one postprocess uses)."""

    def softmax(logits: np.ndarray) -> np.ndarray:
        return scipy.special.softmax(logits.astype(np.float64), axis=1)

    probabilities = softmax(session.run(["logits"], {"input": tensors})[0])
    # the rule on the FP32 probabilities the contract serves: a certain image's 1.0 is never
    # below second_look_below (at most 1)
    second_look = probabilities.max(axis=1).astype(np.float32) < second_look_below
    if second_look.any():
        flipped = np.ascontiguousarray(tensors[second_look][..., ::-1])
        flipped_probabilities = softmax(session.run(["logits"], {"input": flipped})[0])
        probabilities[second_look] = (probabilities[second_look] + flipped_probabilities) / 2
    return probabilities, second_look


@pytest.fixture(scope="module")
def parity_images(tmp_path_factory) -> list[Path]:
    """Real photos (PNG, and JPEG at several sizes, two large enough to be drafted) and
    generated scenes in every format, as files for the oracle."""
    folder = tmp_path_factory.mktemp("parity")
    paths = []
    for name, payload in {**photo_bytes(), **photo_jpegs(), **generated_images()}.items():
        (folder / name).write_bytes(payload)
        paths.append(folder / name)
    return paths


@pytest.fixture(scope="module")
def onnx_session() -> ort.InferenceSession:
    return ort.InferenceSession(
        str(MODEL_REPOSITORY / "resnet50" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )


def drafted(payload: bytes) -> bool:
    """Whether preprocess decodes this image reduced (`draft_factor`), worked out from the
    header alone: a JPEG whose sides both reach twice draft_factor x resize_size."""
    draft_to = int(parameter("preprocess", "draft_factor")) * int(
        parameter("preprocess", "resize_size")
    )
    with Image.open(io.BytesIO(payload)) as image:
        return draft_to > 0 and image.format == "JPEG" and min(image.size) >= 2 * draft_to


def test_preprocess_matches_torchvision_reference(grpc_client, parity_images) -> None:
    reference = reference_outputs(parity_images, int(parameter("preprocess", "resize_size")))
    payloads = [path.read_bytes() for path in parity_images]
    served = infer(
        grpc_client, grpcclient, payloads, model="preprocess", outputs=("preprocessed_image",)
    )["preprocessed_image"]
    assert served.shape == reference["tensors"].shape
    report = {}
    for path, payload, tensor, expected in zip(
        parity_images, payloads, served, reference["tensors"], strict=True
    ):
        cosine = float(tensor.ravel() @ expected.ravel())
        cosine /= float(np.linalg.norm(tensor) * np.linalg.norm(expected))
        worst = float(np.abs(tensor - expected).max())
        report[path.name] = {"drafted": drafted(payload), "max_abs_diff": worst, "cosine": cosine}
        if drafted(payload):  # decoded at reduced scale by libjpeg: close, not identical
            assert cosine >= 0.9999 and worst < 0.2, (path.name, report[path.name])
        else:  # everything else is torchvision's arithmetic on torchvision's pixels
            assert worst <= 1e-6, (path.name, report[path.name])
    (ARTIFACTS / "parity_tensors.json").write_text(json.dumps(report, indent=2))
    assert [name for name, entry in report.items() if entry["drafted"]], report


# the largest served-vs-oracle probability difference allowed: an image decoded at full size
# reaches resnet50 as the oracle's own tensor (only ONNX Runtime's batch composition may move
# the last bits); a drafted JPEG's tensor is within cosine 0.9999 of it, which moved the
# probabilities by up to 1e-3 (random weights)
EXACT_PROBABILITY_BOUND = 1e-5
DRAFTED_PROBABILITY_BOUND = 5e-3


def test_served_scores_match_onnxruntime_on_reference_tensors(
    client: TricolorClient, parity_images, onnx_session
) -> None:
    """Top-1, the top-k ids in order and every top-k probability, against the oracle."""
    reference = reference_outputs(parity_images, int(parameter("preprocess", "resize_size")))
    expected, expected_second_look = oracle_probabilities(
        reference["tensors"], onnx_session, float(parameter("postprocess", "second_look_below"))
    )
    top_k = int(parameter("postprocess", "top_k"))
    payloads = [path.read_bytes() for path in parity_images]
    results = client.classify_many(payloads, [path.name for path in parity_images])
    for payload, oracle, second_look, result in zip(
        payloads, expected, expected_second_look, results, strict=True
    ):
        assert result.error is None, result.error
        oracle_ids = np.argsort(-oracle, kind="stable")[:top_k]
        served = np.array(result.scores)
        difference = float(np.abs(served - oracle[result.class_ids]).max())
        report = (result.path, result.class_ids, oracle_ids.tolist(), difference)
        assert result.class_ids[0] == oracle_ids[0], report
        if drafted(payload):
            assert difference <= DRAFTED_PROBABILITY_BOUND, report
            # in the oracle's order, except among probabilities closer than the bound
            rank_gaps = np.abs(oracle[result.class_ids] - oracle[oracle_ids])
            assert rank_gaps.max() <= DRAFTED_PROBABILITY_BOUND, report
        else:
            assert result.class_ids == oracle_ids.tolist(), report
            assert difference <= EXACT_PROBABILITY_BOUND, report
        assert result.second_look == bool(second_look), report


def solid(hex_code: str, size: tuple[int, int] = (320, 240)) -> bytes:
    return encode(Image.new("RGB", size, hex_code), "PNG")


@pytest.mark.parametrize("palette", [RGB_PALETTE, RYB_PALETTE], ids=["rgb", "ryb"])
def test_solid_palette_colours_are_their_own_dominant_colour(client, palette) -> None:
    results = client.classify_many([solid(code) for code in palette.hex_codes], palette.names)
    served = [
        result.color_rgb if palette is RGB_PALETTE else result.color_ryb for result in results
    ]
    assert served == list(palette.hex_codes)


def nearest_index(hex_code: str, hex_codes: tuple[str, ...]) -> int:
    """The palette colour nearest (Euclidean RGB) to a solid colour, the slow obvious way."""
    colour = [int(hex_code[i : i + 2], 16) for i in (1, 3, 5)]
    distances = [
        sum((colour[c] - int(code[1 + 2 * c : 3 + 2 * c], 16)) ** 2 for c in range(3))
        for code in hex_codes
    ]
    return distances.index(min(distances))


def test_served_shares_are_one_hot_at_each_palettes_own_nearest_colour(client) -> None:
    """Solid colours whose nearest entries have different indices in the two palettes, so
    swapped COLOR_RGB_SHARES / COLOR_RYB_SHARES (or one palette's shares for both) fail."""
    colours = ["#FFFF00", "#00FFFF", "#8000FF", "#FF0080", "#00FF80"]
    assert nearest_index("#FFFF00", RGB_PALETTE.hex_codes) == 2  # the palettes' own yellows
    assert nearest_index("#FFFF00", RYB_PALETTE.hex_codes) == 4
    results = client.classify_many([solid(code) for code in colours], colours)
    for code, result in zip(colours, results, strict=True):
        assert result.error is None, result.error
        for served, hex_codes in [
            (result.color_rgb_shares, RGB_PALETTE.hex_codes),
            (result.color_ryb_shares, RYB_PALETTE.hex_codes),
        ]:
            expected = [0.0] * 12
            expected[nearest_index(code, hex_codes)] = 1.0
            assert served == pytest.approx(expected, abs=1e-6), (code, served)


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


def test_oversize_encoded_image_is_refused_before_decoding(client: TricolorClient) -> None:
    limit = int(parameter("preprocess", "max_encoded_bytes"))
    oversize = b"\xff\xd8\xff\xe0" + bytes(limit)
    result = client.classify_one(oversize, "oversize.jpg")
    assert result.error is not None
    assert result.error.startswith("image is") and "max_encoded_bytes" in result.error
    assert client.is_ready()


def test_metrics_endpoint_counts_requests_and_refusals(server, client: TricolorClient) -> None:
    successes = scrape(server, "nv_inference_request_success", model="classify")
    decoded = scrape(server, "tricolor_decoded_images_total")
    refused = scrape(server, "tricolor_rejected_images_total", reason="undecodable")
    assert client.classify_one(solid("#00FF00"), "green.png").error is None
    assert client.classify_one(b"garbage", "garbage.bin").error is not None
    wait_for_metric(server, "nv_inference_request_success", successes + 1, model="classify")
    wait_for_metric(server, "tricolor_decoded_images_total", decoded + 1)
    wait_for_metric(server, "tricolor_rejected_images_total", refused + 1, reason="undecodable")


@pytest.fixture(scope="module")
def controllable_server():
    """A second server whose postprocess the tests reload with other parameters."""
    running = start_server("tritonserver-second-look.log", model_control="explicit")
    yield running
    running.stop()


@pytest.fixture
def reload_model(controllable_server) -> Iterator[Callable[..., None]]:
    """Reload a model with some parameters (and batching) changed from the repository's
    config; after the test every model it changed is loaded again from the repository's
    config, so no test sees the settings another one left."""
    with grpcclient.InferenceServerClient(controllable_server.grpc_url) as control:
        repository_configs: dict[str, dict] = {}

        def load(model: str, dynamic_batching: dict[str, object] | None = None, **parameters):
            if model not in repository_configs:
                repository_configs[model] = control.get_model_config(model, as_json=True)["config"]
            config = copy.deepcopy(repository_configs[model])
            for key, value in parameters.items():
                config["parameters"][key] = {"string_value": value}
            config["dynamic_batching"].update(dynamic_batching or {})
            control.load_model(model, config=json.dumps(config))
            control.load_model("classify")

        yield load
        for model, config in repository_configs.items():
            control.load_model(model, config=json.dumps(config))
        control.load_model("classify")


def in_one_execute(rows: int) -> dict[str, object]:
    """Dynamic batching that holds requests until `rows` rows are queued, then runs them in
    one execute call (the delay only bounds the wait if one never comes)."""
    return {"preferred_batch_size": [rows], "max_queue_delay_microseconds": str(int(WAIT_S * 1e6))}


def model_delta(client: TricolorClient, model: str, before: ModelTimes) -> ModelTimes:
    """`model`'s statistics since `before`, once it has executed at least once since."""
    return wait_for(
        lambda: client.inference_statistics([model])[model] - before,
        lambda delta: delta.executions >= 1,
        f"{model} executing the requests",
    )


def test_good_requests_batched_with_bad_ones_still_succeed(
    controllable_server, reload_model
) -> None:
    """Good and refused images as requests of one preprocess execute call."""
    good = list(generated_images().values())[:3]
    bad = [b"", b"\x89PNG\r\n\x1a\nbroken", png_bomb()]
    reasons = ["image is empty", "not a recognised image format", "max_decoded_pixels"]
    mixed = [payload for pair in zip(good, bad, strict=True) for payload in pair]
    names = [str(index) for index in range(len(mixed))]
    with TricolorClient(controllable_server.grpc_url, timeout_s=2 * WAIT_S) as client:
        alone = [client.classify_one(payload) for payload in good]
        reload_model("preprocess", dynamic_batching=in_one_execute(len(mixed)))
        before = client.inference_statistics(["preprocess"])["preprocess"]
        results = client.classify_many(mixed, names, concurrency=len(mixed))
        together = model_delta(client, "preprocess", before)
        assert client.is_ready()
    assert (together.executions, together.inferences) == (1, len(mixed)), together
    for expected, result in zip(alone, results[0::2], strict=True):
        assert result.error is None, result.error
        assert result.class_ids == expected.class_ids
        np.testing.assert_allclose(result.scores, expected.scores, rtol=1e-6)
        assert (result.color_rgb, result.color_ryb) == (expected.color_rgb, expected.color_ryb)
    for reason, result in zip(reasons, results[1::2], strict=True):
        # the client shows the server's reason alone: no ensemble prefix, no row of one
        assert result.error is not None and "row 0" not in result.error, result.error
        assert reason in result.error, result.error


@pytest.mark.parametrize("threshold", [0.0, 1.0, None], ids=["off", "every-image", "some"])
def test_second_look_averages_the_flipped_image(
    controllable_server, reload_model, parity_images, onnx_session, threshold
) -> None:
    """Checked against ONNX Runtime on the served tensors, so the BLS arithmetic is exact."""
    payloads = [path.read_bytes() for path in parity_images]
    names = [path.name for path in parity_images]
    with grpcclient.InferenceServerClient(controllable_server.grpc_url) as raw:
        tensors = infer(raw, grpcclient, payloads, "preprocess", ("preprocessed_image",))[
            "preprocessed_image"
        ]
    single_look, _ = oracle_probabilities(tensors, onnx_session, 0.0)
    if threshold == 1.0:  # every image the weights are not certain of (FP32 1.0 is not below 1)
        uncertain = single_look.max(axis=1).astype(np.float32) < 1.0
        payloads = [payload for payload, keep in zip(payloads, uncertain, strict=True) if keep]
        names = [name for name, keep in zip(names, uncertain, strict=True) if keep]
        tensors, single_look = tensors[uncertain], single_look[uncertain]
    # which images take the second look: none, all, or some and not others in one batch
    takers = {0.0: {False}, 1.0: {True}}.get(threshold, {False, True})
    if threshold is None:  # halfway between the two middle confidences of the images
        confidences = np.sort(single_look.max(axis=1))
        middle = len(confidences) // 2
        threshold = float((confidences[middle - 1] + confidences[middle]) / 2)
    reload_model("postprocess", second_look_below=str(threshold))
    expected, expected_second_look = oracle_probabilities(tensors, onnx_session, threshold)
    assert set(expected_second_look.tolist()) == takers, single_look.max(axis=1)
    looks = "tricolor_second_looks_total"
    looks_before = scrape(controllable_server, looks)
    with TricolorClient(controllable_server.grpc_url) as client:
        results = client.classify_batch(payloads, names)
    assert [result.second_look for result in results] == expected_second_look.tolist()
    # the counter moves by the images that took it: none, all, or some of them
    wait_for_metric(controllable_server, looks, looks_before + expected_second_look.sum())
    for row, result in enumerate(results):
        assert result.class_ids == np.argsort(-expected[row], kind="stable")[:5].tolist()
        np.testing.assert_allclose(result.scores, expected[row][result.class_ids], atol=1e-5)
    if expected_second_look.any():  # without the flip's average some score would be off
        moved = [
            np.abs(expected[row] - single_look[row])[result.class_ids].max()
            for row, result in enumerate(results)
            if result.second_look
        ]
        assert max(moved) > 1e-5, moved


def test_second_look_failure_fails_only_the_requests_that_needed_it(
    controllable_server, reload_model
) -> None:
    """Requests that need the second look and requests that do not, in one postprocess
    execute call: a failed BLS request fails the first kind and answers the second."""
    noise = np.random.default_rng(2).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    images = {
        **{name: photo_bytes()[name] for name in ("chelsea.png", "rocket.png", "coffee.png")},
        "hubble_deep_field.png": photo_bytes()["hubble_deep_field.png"],
        **generated_images(),
        "grey.png": solid("#808080"),
        "noise.png": encode(Image.fromarray(noise), "PNG"),
    }
    names, payloads = list(images), list(images.values())
    with TricolorClient(controllable_server.grpc_url, timeout_s=2 * WAIT_S) as client:
        reload_model("postprocess", second_look_below="0")
        single_look = client.classify_batch(payloads, names)
        # split at the widest gap between the images' confidences, whatever the weights:
        # some need the second look, the others not, none near the threshold
        confidences = sorted(result.scores[0] for result in single_look)
        gaps = [high - low for low, high in zip(confidences, confidences[1:], strict=False)]
        split = gaps.index(max(gaps))
        assert gaps[split] > 1e-5, confidences
        threshold = (confidences[split] + confidences[split + 1]) / 2
        reload_model(
            "postprocess",
            dynamic_batching=in_one_execute(len(payloads)),
            second_look_below=str(threshold),
            second_look_model="no_such_model",
        )
        before = client.inference_statistics(["postprocess"])["postprocess"]
        results = client.classify_many(payloads, names, concurrency=len(payloads))
        together = model_delta(client, "postprocess", before)
        assert client.is_ready()
    assert (together.executions, together.inferences) == (1, len(payloads)), together
    for alone, result in zip(single_look, results, strict=True):
        if alone.scores[0] < threshold:
            assert result.error is not None, (result.path, threshold)
            assert "second look failed" in result.error and "no_such_model" in result.error
        else:
            assert result.error is None, (result.path, threshold, result.error)
            assert not result.second_look
            assert result.class_ids == alone.class_ids
            np.testing.assert_allclose(result.scores, alone.scores, rtol=1e-6)
