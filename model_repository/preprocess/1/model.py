"""preprocess: encoded image bytes -> normalised FP32 tensor + thumbnail, every row of a call.

A bad image fails its own request (the error names the row and the reason); the other
requests of the same `execute` call are answered as usual.
"""

from __future__ import annotations

import time

import triton_python_backend_utils as pb_utils

from tricolor.contract import IMAGE_INPUT
from tricolor.imaging import ImageRejected, Limits, normalise, pad_thumbnails, preprocess
from tricolor.python_backend import (
    ExecutingRequests,
    Failure,
    gather,
    load_config,
    metric_labels,
    respond,
)

# seconds per image: small JPEGs take ~5 ms, 20-megapixel photos ~0.5 s on one core
DECODE_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        _, parameters = load_config(args)
        self.resize_size = parameters.integer("resize_size", minimum=224)
        self.thumbnail_size = parameters.integer("thumbnail_size", minimum=1, maximum=128)
        self.draft_factor = parameters.integer("draft_factor", minimum=0)
        self.limits = Limits(
            max_encoded_bytes=parameters.integer("max_encoded_bytes", minimum=1),
            max_decoded_pixels=parameters.integer("max_decoded_pixels", minimum=1),
        )
        self.executing = ExecutingRequests(args)
        self.metric_labels = metric_labels(args)
        # every MetricFamily stays referenced on self, or its metrics fail on first use
        self.decoded_family = pb_utils.MetricFamily(
            name="tricolor_decoded_images_total",
            description="Images decoded and preprocessed",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.decoded = self.decoded_family.Metric(labels=self.metric_labels)
        self.decode_seconds_family = pb_utils.MetricFamily(
            name="tricolor_decode_seconds_total",
            description="Seconds spent decoding and preprocessing images",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.decode_seconds = self.decode_seconds_family.Metric(labels=self.metric_labels)
        self.rejected_family = pb_utils.MetricFamily(
            name="tricolor_rejected_images_total",
            description="Images refused by preprocess, by reason",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.rejected: dict[str, object] = {}
        self.decode_histogram_family = pb_utils.MetricFamily(
            name="tricolor_decode_seconds",
            description="Seconds to decode and preprocess one image (refused ones included)",
            kind=pb_utils.MetricFamily.HISTOGRAM,
        )
        self.decode_histogram = self.decode_histogram_family.Metric(
            labels=self.metric_labels, buckets=list(DECODE_BUCKETS)
        )
        pb_utils.Logger.log_info(
            f"preprocess: resize {self.resize_size}, crop 224, thumbnail {self.thumbnail_size}, "
            f"JPEG draft factor {self.draft_factor}, limits {self.limits}"
        )

    def _count_rejection(self, reason: str) -> None:
        if reason not in self.rejected:
            self.rejected[reason] = self.rejected_family.Metric(
                labels={**self.metric_labels, "reason": reason}
            )
        self.rejected[reason].increment(1)

    def _preprocess_rows(self, images) -> list | Failure:
        """Every row of one request, or why it fails (every refused row named)."""
        results, problems = [], []
        for row, data in enumerate(images.reshape(-1)):
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
            except Exception:  # noqa: BLE001 (our own code failed: not the image's fault)
                return Failure.ours(f"preprocess failed on row {row}")
            finally:
                self.decode_histogram.observe(time.perf_counter() - started)
        return Failure("; ".join(problems)) if problems else results

    def execute(self, requests: list) -> list:
        return self.executing.run(requests, self._execute)

    def _execute(self, requests: list) -> list:
        started = time.perf_counter()
        batch = gather(requests, (IMAGE_INPUT,))
        images = None if batch.empty else batch.stacked(IMAGE_INPUT)
        accepted = []
        # the row slices are taken first: a refused request drops out of the outputs' rows
        for index, rows in list(batch.rows()):
            outcome = self._preprocess_rows(images[rows])
            if isinstance(outcome, Failure):
                batch.outcomes[index] = outcome
            else:
                accepted.extend(outcome)
        tensors = normalise([result.crop for result in accepted])
        thumbnails, shapes = pad_thumbnails(
            [result.thumbnail for result in accepted], self.thumbnail_size
        )
        self.decoded.increment(len(accepted))
        self.decode_seconds.increment(time.perf_counter() - started)
        return respond(
            batch.outcomes,
            lambda rows: {
                "preprocessed_image": tensors[rows],
                "thumbnail": thumbnails[rows],
                "thumbnail_size": shapes[rows],
            },
        )
