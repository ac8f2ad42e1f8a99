"""A bounded closed-loop HTTP load generator (stdlib only): `concurrency` clients on 127.0.0.1,
each sending the next photo as soon as its previous answer is back, for a fixed time.

The same code drives Triton (`/v2/models/classify/infer`, binary tensor extension) and
TorchServe (`/predictions/<model>`, the raw image as body), so both see the same load shape.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .summary import ClosedLoopRow


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


@dataclass
class Pooled:
    """Answers at one concurrency, pooled over rounds (each round a separate `run`)."""

    concurrency: int
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    loads: list[str] = field(default_factory=list)  # the 1-minute load average after each round
    round_throughputs: list[float] = field(default_factory=list)  # each round on its own
    round_p99_ms: list[float] = field(default_factory=list)

    def row(self) -> ClosedLoopRow:
        latencies = sorted(self.latencies_s)
        count = len(latencies)
        return ClosedLoopRow(
            concurrency=self.concurrency,
            requests=count,
            errors=self.errors,
            seconds=self.seconds,
            throughput=count / self.seconds if self.seconds else 0.0,
            p50_ms=1000 * statistics.median(latencies) if count else None,
            p99_ms=1000 * latencies[min(count - 1, int(0.99 * count))] if count else None,
            load=", ".join(self.loads),
            round_throughputs=list(self.round_throughputs),
            round_p99_ms=list(self.round_p99_ms),
        )


def run(
    host: str,
    port: int,
    build: Callable[[bytes], tuple[str, bytes, dict]],
    images: list[bytes],
    into: Pooled,
    seconds: float,
    warmup_s: float = 2.0,
) -> None:
    """`into.concurrency` clients for `warmup_s` + `seconds`; adds the measured part to `into`."""
    concurrency = into.concurrency
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
    into.latencies_s += latencies
    into.round_throughputs.append(len(latencies) / seconds)
    if latencies:
        ordered = sorted(latencies)
        into.round_p99_ms.append(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))])
    into.errors += errors[0]
    into.seconds += seconds
    into.loads.append(f"{os.getloadavg()[0]:.2f}")
