"""Triton's metrics endpoint (Prometheus text), read with `prometheus_client`'s parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called `name` (Prometheus text) whose labels include `labels`.

    `name` is a sample's name as exported: a counter (`nv_inference_request_success`,
    `tricolor_decoded_images_total`), a gauge, a histogram's `_count`, `_sum` or `_bucket`. (The
    parser adds `_total` to counter samples that lack it, as OpenMetrics names them.)
    """
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if name
        in (sample.name, sample.name.removesuffix("_total") if family.type == "counter" else None)
        and labels.items() <= sample.labels.items()
    )
