"""A bounded closed-loop HTTP load generator (stdlib only): `concurrency` clients on 127.0.0.1,
each sending the next photo as soon as its previous answer is back, for a fixed time.

The same code drives Triton (`/v2/models/classify/infer`, binary tensor extension) and
TorchServe (`/predictions/<model>`, the raw image as body), so both see the same load shape.
"""

from __future__ import annotations

import http.client
import json
import statistics
import struct
import threading
import time
from collections.abc import Callable


def triton_request(model: str = "classify") -> Callable[[bytes], tuple[str, bytes, dict]]:
    def build(image: bytes) -> tuple[str, bytes, dict]:
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "IMAGE",
                        "shape": [1, 1],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": len(image) + 4},
                    }
                ],
                "outputs": [
                    {"name": name} for name in ("LABELS", "SCORES", "COLOR_RGB", "COLOR_RYB")
                ],
            }
        ).encode()
        body = header + struct.pack("<I", len(image)) + image
        headers = {
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        }
        return f"/v2/models/{model}/infer", body, headers

    return build


def torchserve_request(model: str = "resnet50") -> Callable[[bytes], tuple[str, bytes, dict]]:
    def build(image: bytes) -> tuple[str, bytes, dict]:
        return f"/predictions/{model}", image, {"Content-Type": "application/octet-stream"}

    return build


def run(
    host: str,
    port: int,
    build: Callable[[bytes], tuple[str, bytes, dict]],
    images: list[bytes],
    concurrency: int,
    seconds: float,
    warmup_s: float = 2.0,
) -> dict:
    prepared = [build(image) for image in images]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = time.perf_counter()
    measure_from = start + warmup_s
    deadline = measure_from + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=120)
        position = index
        while True:
            now = time.perf_counter()
            if now >= deadline:
                break
            path, body, headers = prepared[position % len(prepared)]
            position += concurrency
            sent = time.perf_counter()
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=120)
            done = time.perf_counter()
            if sent >= measure_from and done <= deadline:
                with lock:
                    if ok:
                        latencies.append(done - sent)
                    else:
                        errors[0] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(index,)) for index in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    count = len(latencies)

    def percentile(q: float) -> float | None:
        return 1000 * latencies[min(count - 1, int(q * count))] if count else None

    return {
        "concurrency": concurrency,
        "requests": count,
        "errors": errors[0],
        "throughput": count / seconds,
        "p50_ms": 1000 * statistics.median(latencies) if count else None,
        "p99_ms": percentile(0.99),
    }
