"""preprocess: encoded image bytes -> normalised FP32 tensor + thumbnail, every row of a call.

A bad image fails its own request (the error names the row and the reason); the other
requests of the same `execute` call are answered as usual.
"""

from __future__ import annotations

import json
import time

import triton_python_backend_utils as pb_utils

from tricolor.imaging import ImageRejected, Limits, normalise, pad_thumbnails, preprocess

# seconds per image: small JPEGs take ~5 ms, 20-megapixel photos ~0.5 s on one core
DECODE_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


def _int_parameter(parameters: dict, name: str, default: int, minimum: int = 1) -> int:
    raw = parameters.get(name, {}).get("string_value", str(default))
    try:
        value = int(raw)
    except ValueError as exc:
        raise pb_utils.TritonModelException(f"parameter {name}={raw!r} is not an integer") from exc
    if value < minimum:
        raise pb_utils.TritonModelException(f"parameter {name}={value} must be >= {minimum}")
    return value


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        parameters = config.get("parameters", {})
        self.resize_size = _int_parameter(parameters, "resize_size", 232, minimum=224)
        self.thumbnail_size = _int_parameter(parameters, "thumbnail_size", 64)
        if self.thumbnail_size > 128:
            raise pb_utils.TritonModelException("parameter thumbnail_size must be <= 128")
        self.draft_factor = _int_parameter(parameters, "draft_factor", 2, minimum=0)
        self.limits = Limits(
            max_encoded_bytes=_int_parameter(parameters, "max_encoded_bytes", 32 << 20),
            max_decoded_pixels=_int_parameter(parameters, "max_decoded_pixels", 50_000_000),
        )
        labels = {"model": args["model_name"], "version": args["model_version"]}
        # requests inside execute right now: the launcher drains until every model is idle
        self.executing_family = pb_utils.MetricFamily(
            name="tricolor_executing_requests",
            description="Requests inside the model's execute right now",
            kind=pb_utils.MetricFamily.GAUGE,
        )
        self.executing = self.executing_family.Metric(labels=labels)
        # every MetricFamily stays referenced on self, or its metrics fail on first use
        self.decoded_family = pb_utils.MetricFamily(
            name="tricolor_decoded_images_total",
            description="Images decoded and preprocessed",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.decoded = self.decoded_family.Metric(labels=labels)
        self.decode_seconds_family = pb_utils.MetricFamily(
            name="tricolor_decode_seconds_total",
            description="Seconds spent decoding and preprocessing images",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.decode_seconds = self.decode_seconds_family.Metric(labels=labels)
        self.rejected_family = pb_utils.MetricFamily(
            name="tricolor_rejected_images_total",
            description="Images refused by preprocess, by reason",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.decode_histogram_family = pb_utils.MetricFamily(
            name="tricolor_decode_seconds",
            description="Seconds to decode and preprocess one image (refused ones included)",
            kind=pb_utils.MetricFamily.HISTOGRAM,
        )
        self.decode_histogram = self.decode_histogram_family.Metric(
            labels=labels, buckets=list(DECODE_BUCKETS)
        )
        self.metric_labels = labels
        self.rejected: dict[str, object] = {}
        pb_utils.Logger.log_info(
            f"preprocess: resize {self.resize_size}, crop 224, thumbnail {self.thumbnail_size}, "
            f"JPEG draft factor {self.draft_factor}, "
            f"limits {self.limits}"
        )

    def _count_rejection(self, reason: str) -> None:
        if reason not in self.rejected:
            self.rejected[reason] = self.rejected_family.Metric(
                labels={**self.metric_labels, "reason": reason}
            )
        self.rejected[reason].increment(1)

    def _preprocess_request(self, request) -> tuple[list, str | None]:
        """Every row of one request, or the reason it fails (all bad rows named)."""
        image_tensor = pb_utils.get_input_tensor_by_name(request, "IMAGE")
        if image_tensor is None:
            return [], "input IMAGE is missing"
        results, problems = [], []
        for row, data in enumerate(image_tensor.as_numpy().reshape(-1)):
            started = time.perf_counter()
            try:
                results.append(
                    preprocess(
                        bytes(data),
                        self.resize_size,
                        self.thumbnail_size,
                        self.limits,
                        self.draft_factor,
                    )
                )
            except ImageRejected as exc:
                self._count_rejection(exc.reason)
                problems.append(f"row {row}: {exc}")
            finally:
                self.decode_histogram.observe(time.perf_counter() - started)
        return results, "; ".join(problems) or None

    def execute(self, requests: list) -> list:
        self.executing.increment(len(requests))
        try:
            return self._execute(requests)
        finally:
            self.executing.increment(-len(requests))

    def _execute(self, requests: list) -> list:
        started = time.perf_counter()
        per_request = [self._preprocess_request(request) for request in requests]
        accepted = [result for results, error in per_request if error is None for result in results]
        tensors = normalise([result.crop for result in accepted])
        thumbnails, shapes = pad_thumbnails(
            [result.thumbnail for result in accepted], self.thumbnail_size
        )
        responses, offset = [], 0
        for results, error in per_request:
            if error is not None:
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(error, pb_utils.TritonError.INVALID_ARG)
                    )
                )
                continue
            rows = slice(offset, offset + len(results))
            offset += len(results)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("preprocessed_image", tensors[rows]),
                        pb_utils.Tensor("thumbnail", thumbnails[rows]),
                        pb_utils.Tensor("thumbnail_size", shapes[rows]),
                    ]
                )
            )
        self.decoded.increment(len(accepted))
        self.decode_seconds.increment(time.perf_counter() - started)
        return responses
