"""postprocess: softmax, the confidence-gated second look (BLS), top-k labels, dominant colours
and colour shares.

Images whose top-1 probability is below `second_look_below` are flipped horizontally and sent
back through `resnet50` in one batched BLS request per `execute`; the two probability vectors
are averaged before top-k. A failed BLS request fails only the requests that needed it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from tricolor.colours import RGB_PALETTE, RYB_PALETTE, dominant_colours, palette_shares
from tricolor.scores import softmax, top_k

INPUTS = ("logits", "preprocessed_image", "thumbnail", "thumbnail_size")
CONFIDENCE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def _parameter(parameters: dict, name: str, default: str) -> str:
    return parameters.get(name, {}).get("string_value", default)


def _strings(values: list[str]) -> np.ndarray:
    return np.array([value.encode() for value in values], dtype=np.object_)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        parameters = config.get("parameters", {})
        try:
            self.top_k = int(_parameter(parameters, "top_k", "5"))
            self.second_look_below = float(_parameter(parameters, "second_look_below", "0.2"))
        except ValueError as exc:
            raise pb_utils.TritonModelException(f"bad postprocess parameter: {exc}") from exc
        if self.top_k < 1 or not 0.0 <= self.second_look_below <= 1.0:
            raise pb_utils.TritonModelException(
                "top_k must be >= 1 and second_look_below in [0, 1]"
            )
        self.second_look_model = _parameter(parameters, "second_look_model", "resnet50")
        model_dir = Path(args["model_repository"])
        labels_path = model_dir / _parameter(parameters, "labels_file", "labels.txt")
        if not labels_path.exists():
            raise pb_utils.TritonModelException(f"{labels_path} is missing: run `make setup`")
        self.labels = _strings(labels_path.read_text().splitlines())
        provenance_path = model_dir / "weights.json"
        provenance = json.loads(provenance_path.read_text()) if provenance_path.exists() else {}
        self.weights = str(provenance.get("weights", "unknown")).encode()
        if "warning" in provenance:
            pb_utils.Logger.log_warn(f"postprocess: {provenance['warning']}")

        labels = {"model": args["model_name"], "version": args["model_version"]}
        # requests inside execute right now: the launcher drains until every model is idle
        self.executing_family = pb_utils.MetricFamily(
            name="tricolor_executing_requests",
            description="Requests inside the model's execute right now",
            kind=pb_utils.MetricFamily.GAUGE,
        )
        self.executing = self.executing_family.Metric(labels=labels)
        # every MetricFamily stays referenced on self, or its metrics fail on first use
        self.second_look_family = pb_utils.MetricFamily(
            name="tricolor_second_looks_total",
            description="Images sent through resnet50 a second time, flipped",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.second_looks = self.second_look_family.Metric(labels=labels)
        # drift in this histogram is how an operator notices unfamiliar images
        self.confidence_family = pb_utils.MetricFamily(
            name="tricolor_top1_confidence",
            description="Top-1 probability of each answered image (after any second look)",
            kind=pb_utils.MetricFamily.HISTOGRAM,
        )
        self.confidence = self.confidence_family.Metric(
            labels=labels, buckets=list(CONFIDENCE_BUCKETS)
        )
        pb_utils.Logger.log_info(
            f"postprocess: top_k {self.top_k}, second look below {self.second_look_below} via "
            f"'{self.second_look_model}', {len(self.labels)} labels, weights "
            f"{self.weights.decode()}"
        )

    def execute(self, requests: list) -> list:
        self.executing.increment(len(requests))
        try:
            return self._execute(requests)
        finally:
            self.executing.increment(-len(requests))

    def _execute(self, requests: list) -> list:
        per_request, errors = [], []
        for request in requests:
            tensors = [pb_utils.get_input_tensor_by_name(request, name) for name in INPUTS]
            missing = [name for name, tensor in zip(INPUTS, tensors, strict=True) if tensor is None]
            per_request.append(None if missing else [tensor.as_numpy() for tensor in tensors])
            errors.append(f"inputs missing: {', '.join(missing)}" if missing else None)
        present = [arrays for arrays in per_request if arrays is not None]
        if not present:
            return [self._error(error) for error in errors]
        logits, images, thumbnails, sizes = (
            np.concatenate(parts) for parts in zip(*present, strict=True)
        )
        if logits.shape[1] != len(self.labels):
            message = (
                f"resnet50 returned {logits.shape[1]} classes but labels.txt has "
                f"{len(self.labels)}: export the model and labels together"
            )
            return [self._error(message) for _ in requests]

        probabilities = softmax(logits)
        second_look = probabilities.max(axis=1) < self.second_look_below
        bls_error = self._second_look(probabilities, images, second_look)
        class_ids, scores = top_k(probabilities, self.top_k)
        for score in scores[:, 0].tolist():
            self.confidence.observe(score)
        rgb_codes, rgb_names = dominant_colours(thumbnails, sizes, RGB_PALETTE)
        ryb_codes, ryb_names = dominant_colours(thumbnails, sizes, RYB_PALETTE)
        rgb_shares = palette_shares(thumbnails, sizes, RGB_PALETTE)
        ryb_shares = palette_shares(thumbnails, sizes, RYB_PALETTE)

        responses, offset = [], 0
        for arrays, error in zip(per_request, errors, strict=True):
            if error is not None:
                responses.append(self._error(error))
                continue
            rows = slice(offset, offset + len(arrays[0]))
            offset = rows.stop
            if bls_error is not None and second_look[rows].any():
                responses.append(self._error(f"second look failed: {bls_error}"))
                continue
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("LABELS", self.labels[class_ids[rows]]),
                        pb_utils.Tensor("SCORES", scores[rows]),
                        pb_utils.Tensor("CLASS_IDS", class_ids[rows]),
                        pb_utils.Tensor("COLOR_RGB", _strings(rgb_codes[rows]).reshape(-1, 1)),
                        pb_utils.Tensor("COLOR_RYB", _strings(ryb_codes[rows]).reshape(-1, 1)),
                        pb_utils.Tensor("COLOR_RGB_NAME", _strings(rgb_names[rows]).reshape(-1, 1)),
                        pb_utils.Tensor("COLOR_RYB_NAME", _strings(ryb_names[rows]).reshape(-1, 1)),
                        pb_utils.Tensor("COLOR_RGB_SHARES", rgb_shares[rows]),
                        pb_utils.Tensor("COLOR_RYB_SHARES", ryb_shares[rows]),
                        pb_utils.Tensor("SECOND_LOOK", second_look[rows].reshape(-1, 1)),
                        pb_utils.Tensor(
                            "WEIGHTS", np.full((rows.stop - rows.start, 1), self.weights, object)
                        ),
                    ]
                )
            )
        return responses

    def _second_look(
        self, probabilities: np.ndarray, images: np.ndarray, second_look: np.ndarray
    ) -> str | None:
        """Average in the flipped images' probabilities (in place); the BLS error, if any."""
        if not second_look.any():
            return None
        flipped = np.ascontiguousarray(images[second_look][..., ::-1])
        request = pb_utils.InferenceRequest(
            model_name=self.second_look_model,
            requested_output_names=["logits"],
            inputs=[pb_utils.Tensor("input", flipped)],
        )
        response = request.exec()
        if response.has_error():
            return response.error().message()
        flipped_logits = pb_utils.get_output_tensor_by_name(response, "logits").as_numpy()
        probabilities[second_look] = (probabilities[second_look] + softmax(flipped_logits)) / 2
        self.second_looks.increment(int(second_look.sum()))
        return None

    @staticmethod
    def _error(message: str):
        return pb_utils.InferenceResponse(
            error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
        )
