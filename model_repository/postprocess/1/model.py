"""postprocess: softmax, the confidence-gated second look (BLS), top-k labels, dominant colours
and colour shares.

Images whose top-1 probability is below `second_look_below` are flipped horizontally and sent
back through `resnet50` in one batched BLS request per `execute`; the two probability vectors
are averaged before top-k. A failed BLS request fails only the requests that needed it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from tricolor import contract
from tricolor.colours import RGB_PALETTE, RYB_PALETTE, colours
from tricolor.python_backend import (
    ExecutingRequests,
    Failure,
    gather,
    load_config,
    metric_labels,
    respond,
)
from tricolor.scores import softmax, top_k
from tricolor.weights import WeightsProvenance

INPUTS = ("logits", "preprocessed_image", "thumbnail", "thumbnail_size")
CONFIDENCE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def _strings(values: list[str]) -> np.ndarray:
    """One string per image, as the [N, 1] BYTES tensor of a per-image output."""
    return np.array([value.encode() for value in values], dtype=np.object_).reshape(-1, 1)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        _, parameters = load_config(args)
        self.top_k = parameters.integer("top_k", minimum=1)
        self.second_look_below = parameters.number("second_look_below", minimum=0, maximum=1)
        self.second_look_model = parameters.text("second_look_model")
        model_dir = Path(args["model_repository"])
        labels_path = model_dir / parameters.text("labels_file")
        if not labels_path.exists():
            raise pb_utils.TritonModelException(f"{labels_path} is missing: run `make setup`")
        labels = labels_path.read_text().splitlines()
        self.labels = np.array([label.encode() for label in labels], dtype=np.object_)
        provenance = WeightsProvenance.read(model_dir)
        self.weights = provenance.weights.encode()
        if provenance.warning:
            pb_utils.Logger.log_warn(f"postprocess: {provenance.warning}")

        self.executing = ExecutingRequests(args)
        labels = metric_labels(args)
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
            f"{provenance.weights}"
        )

    def execute(self, requests: list) -> list:
        return self.executing.run(requests, self._execute)

    def _execute(self, requests: list) -> list:
        batch = gather(requests, INPUTS)
        if batch.empty:
            return respond(batch.outcomes, lambda rows: {})
        logits, images, thumbnails, sizes = (batch.stacked(name) for name in INPUTS)
        if logits.shape[1] != len(self.labels):
            failure = Failure(
                f"internal error: resnet50 returned {logits.shape[1]} classes but the labels "
                f"file has {len(self.labels)}: export the model and labels together",
                internal=True,
            )
            pb_utils.Logger.log_error(failure.message)
            return [failure.response() for _ in requests]

        probabilities = softmax(logits)
        second_look = probabilities.max(axis=1) < self.second_look_below
        bls_failure = self._second_look(probabilities, images, second_look)
        class_ids, scores = top_k(probabilities, self.top_k)
        for score in scores[:, 0].tolist():
            self.confidence.observe(score)
        # one distance computation per palette gives the dominant colour and the shares
        rgb, ryb = colours(thumbnails, sizes, (RGB_PALETTE, RYB_PALETTE))
        outputs = {
            contract.LABELS.name: self.labels[class_ids],
            contract.SCORES.name: scores,
            contract.CLASS_IDS.name: class_ids,
            contract.COLOR_RGB.name: _strings(rgb.hex_codes),
            contract.COLOR_RYB.name: _strings(ryb.hex_codes),
            contract.COLOR_RGB_NAME.name: _strings(rgb.names),
            contract.COLOR_RYB_NAME.name: _strings(ryb.names),
            contract.COLOR_RGB_SHARES.name: rgb.shares,
            contract.COLOR_RYB_SHARES.name: ryb.shares,
            contract.SECOND_LOOK.name: second_look.reshape(-1, 1),
            contract.WEIGHTS.name: np.full((len(logits), 1), self.weights, dtype=np.object_),
        }

        def answer(rows: slice) -> dict[str, np.ndarray] | Failure:
            if bls_failure is not None and second_look[rows].any():
                return bls_failure
            return {name: array[rows] for name, array in outputs.items()}

        return respond(batch.outcomes, answer)

    def _second_look(
        self, probabilities: np.ndarray, images: np.ndarray, second_look: np.ndarray
    ) -> Failure | None:
        """Average in the flipped images' probabilities (in place); the BLS failure, if any."""
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
            return Failure(f"second look failed: {response.error().message()}", internal=True)
        flipped_logits = pb_utils.get_output_tensor_by_name(response, "logits").as_numpy()
        probabilities[second_look] = (probabilities[second_look] + softmax(flipped_logits)) / 2
        self.second_looks.increment(int(second_look.sum()))
        return None
