"""Soak: mixed good and bad traffic at steady concurrency for a bounded time, on loopback.

Starts its own tritonserver on free loopback ports (or uses --url), samples the resident
memory of tritonserver and every Python-backend stub, counts failed good requests, and
writes a Markdown report (and a PNG plot when matplotlib is installed).

    .venv/bin/python perf/studies/soak.py --duration 180 --concurrency 8 --bad-ratio 0.3
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tricolor.client import TricolorClient
from tricolor.launcher import python_stubs, start_on_free_ports
from tricolor.settings import LOCAL_STATE_DIR


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def processes(server_pid: int) -> dict[str, int]:
    """{"tritonserver": pid, "preprocess_0_0": pid, ...}: the server and its stubs."""
    stubs = sorted(python_stubs(server_pid), key=lambda stub: (stub.model, stub.pid))
    return {"tritonserver": server_pid, **{f"{stub.model}[{stub.pid}]": stub.pid for stub in stubs}}


def encode(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def traffic() -> tuple[list[bytes], list[bytes]]:
    rng = np.random.default_rng(3)
    good = []
    for width, height, image_format in [
        (640, 480, "JPEG"),
        (300, 800, "PNG"),
        (500, 500, "WEBP"),
        (250, 250, "BMP"),
        (400, 300, "GIF"),
    ]:
        pixels = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)
        good.append(encode(image, image_format))
    bomb = encode(Image.new("1", (9000, 9000)), "PNG")  # 81 MP > the 50 MP limit
    bad = [b"", b"not an image at all", good[0][: len(good[0]) // 2], bomb, rng.bytes(2048)]
    return good, bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180, help="seconds of load after warm-up")
    parser.add_argument(
        "--warmup", type=float, default=20, help="seconds of load before the baseline"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--bad-ratio", type=float, default=0.3)
    parser.add_argument(
        "--bound-mib",
        type=float,
        default=64,
        help="allowed RSS growth per process, end vs after warm-up",
    )
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between RSS samples")
    parser.add_argument("--url", help="gRPC host:port of a running server (default: start one)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("SOAK.md"))
    args = parser.parse_args()

    server = None
    if args.url is None:
        server = start_on_free_ports(LOCAL_STATE_DIR / "soak-tritonserver.log")  # git-ignored
        url = server.grpc_url
    else:
        url = args.url
    pids = processes(server.process.pid) if server else {}

    good, bad = traffic()
    stop = threading.Event()
    counts = {"good_ok": 0, "good_failed": 0, "bad_refused": 0, "bad_answered": 0}
    failures: list[str] = []
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        chooser = random.Random(seed)
        with TricolorClient(url, timeout_s=60) as client:
            while not stop.is_set():
                is_bad = chooser.random() < args.bad_ratio
                image = chooser.choice(bad if is_bad else good)
                result = client.classify_one(image)
                with lock:
                    if is_bad:
                        counts["bad_refused" if result.error else "bad_answered"] += 1
                    elif result.error is None:
                        counts["good_ok"] += 1
                        latencies.append(result.latency_ms)
                    else:
                        counts["good_failed"] += 1
                        failures.append(result.error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    samples: list[tuple[float, dict[str, float]]] = []
    baseline_at = None
    try:
        while time.monotonic() - started < args.warmup + args.duration:
            time.sleep(args.interval)
            now = time.monotonic() - started
            samples.append((now, {name: rss_mib(pid) for name, pid in pids.items()}))
            if baseline_at is None and now >= args.warmup:
                baseline_at = len(samples) - 1
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        ready = TricolorClient(url).is_ready()
        if server is not None:
            server.stop()
    elapsed = time.monotonic() - started

    baseline = samples[baseline_at][1] if pids else {}
    end = samples[-1][1] if pids else {}
    growth = {name: end[name] - baseline[name] for name in pids}
    peak = {name: max(sample[name] for _, sample in samples[baseline_at:]) for name in pids}
    within = all(value <= args.bound_mib for value in growth.values())
    passed = within and counts["good_failed"] == 0 and counts["bad_answered"] == 0 and ready
    total = sum(counts.values())
    p50, p99 = np.percentile(latencies, [50, 99]) if latencies else (0.0, 0.0)

    rows = "\n".join(
        f"| {name} | {baseline[name]:.1f} | {end[name]:.1f} | {peak[name]:.1f} | "
        f"{growth[name]:+.1f} |"
        for name in pids
    )
    plot_note = plot(samples, args.warmup, args.out.with_suffix(".png"))
    report = f"""# Soak: mixed good and bad traffic on loopback

Written by `perf/soak.py` on {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}.

- Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},
  embedded Triton 2.51 on CPU (`--model-config-name=cpu`), loopback only.
- Parameters: `--duration {args.duration:g} --warmup {args.warmup:g} --concurrency
  {args.concurrency} --bad-ratio {args.bad_ratio:g} --bound-mib {args.bound_mib:g}`
  ({len(good)} good images in 5 formats; bad ones: empty, text, truncated JPEG,
  81 MP PNG bomb, random bytes).
- Requests: {total} in {elapsed:.0f} s ({total / elapsed:.1f}/s); good answered
  {counts["good_ok"]}, good failed **{counts["good_failed"]}**; bad refused
  {counts["bad_refused"]}, bad answered {counts["bad_answered"]}. Good-request latency
  p50 {p50:.0f} ms, p99 {p99:.0f} ms. Server ready at the end: {ready}.

Resident memory (MiB), after warm-up ({args.warmup:g} s) vs the end:

| process | after warm-up | end | peak | growth |
|---|---|---|---|---|
{rows}

**Bound: growth <= {args.bound_mib:g} MiB per process, no failed good request, every bad
request refused, server ready at the end. Result: {"PASS" if passed else "FAIL"}.**
{plot_note}
"""
    if failures:
        report += "\nFirst failures:\n\n" + "\n".join(f"- `{f}`" for f in failures[:5]) + "\n"
    args.out.write_text(report)
    print(report)
    return 0 if passed else 1


def plot(samples: list[tuple[float, dict[str, float]]], warmup: float, path: Path) -> str:
    try:
        import matplotlib  # noqa: PLC0415 (optional: the `perf` extra)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return "\n(matplotlib is not installed: no plot; `pip install -e .[perf]`.)\n"
    if not samples or not samples[0][1]:
        return ""
    figure, axes = plt.subplots(figsize=(8, 4))
    times = [t for t, _ in samples]
    for name in samples[0][1]:
        axes.plot(times, [sample[name] for _, sample in samples], label=name)
    axes.axvline(warmup, color="grey", linestyle="--", label="end of warm-up")
    axes.set_xlabel("seconds")
    axes.set_ylabel("RSS (MiB)")
    axes.set_title("tritonserver and Python-backend stubs under mixed traffic")
    axes.legend(fontsize="small", loc="center right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return f"\n![RSS over time]({path.name})\n"


if __name__ == "__main__":
    sys.exit(main())
