"""`tricolor label` over a library it has labelled already: files/s of the rescan (stat only:
nothing is hashed or sent) and the run's peak memory, from 10,000 to 1,000,000 stored files.
Results go to perf/CATALOGUE.md by hand, with the load average printed beside every number.

    .venv/bin/python -m perf.rescan_bench --sizes 10000 100000 1000000

Per size: a SQLite catalogue written by `perf.catalogue_bench` (N pictures, about 1.3 files
each, one in fifty files missing) under the embedded server's own provenance, and every file
that is not missing made on disk with the size and mtime its row holds (one byte, mtime 1 ns):
to `tricolor label` each is unchanged. One `tricolor label DIR --library bench` process per
round; its rate is files found over the run's time as its summary gives it (walk, stat, the
stored rows per chunk, touching them, the provenance probe, marking none missing), its peak
memory the process's high-water resident set (VmHWM, polled every 20 ms until it exits).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from tricolor.catalogue.labeller import probe_image, read_provenance
from tricolor.catalogue.store import files, open_catalogue
from tricolor.client import TricolorClient
from tricolor.launcher import start_on_free_ports

from .catalogue_bench import synthetic_catalogue
from .common import OUT_DIR, load_average

PEAK_POLL_S = 0.02
SUMMARY = re.compile(r"(\d+) images?: .* (\d+) unchanged, .* in ([\d.]+) s")


def make_files(url: str, root: Path) -> int:
    """Every stored file that is not missing, on disk as its row has it (size 1, mtime 1 ns)."""
    made = 0
    with open_catalogue(url, create=False) as catalogue, catalogue.engine.connect() as connection:
        rows = connection.execution_options(yield_per=20_000).execute(
            select(files.c.relative_path).where(files.c.missing_since.is_(None))
        )
        for (relative,) in rows:
            path = os.path.join(os.fsencode(root), relative)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(b"x")
            os.utime(path, ns=(1, 1))
            made += 1
    return made


def high_water_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), 0 once it has exited. Not `wait4`'s
    ru_maxrss: that keeps the peak from before exec, when the child was a copy of this
    process and of the catalogue it just wrote."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rescan(root: Path, url: str, grpc_url: str, log: Path) -> dict:
    """One `tricolor label` process over the library: its summary's rate and its peak RSS."""
    command = [
        str(Path(sys.executable).parent / "tricolor"),
        "label", str(root), "--library", "bench", "--db", url, "--url", grpc_url,
    ]  # fmt: skip
    started = time.perf_counter()
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        peak_kib = 0
        while True:  # the peak as the kernel keeps it for this process since its exec
            peak_kib = max(peak_kib, high_water_kib(process.pid))
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(PEAK_POLL_S)
    wall = time.perf_counter() - started
    text = log.read_text()
    match = SUMMARY.search(text)
    if os.waitstatus_to_exitcode(status) != 0 or match is None:
        raise RuntimeError(f"tricolor label failed:\n{text[-2000:]}")
    found, unchanged, elapsed = (int(match.group(1)), int(match.group(2)), float(match.group(3)))
    if unchanged != found:
        raise RuntimeError(f"not a rescan: {unchanged} of {found} unchanged:\n{text[-2000:]}")
    return {
        "files": found,
        "run_s": elapsed,
        "wall_s": round(wall, 1),
        "files_per_s": round(found / elapsed),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "load_average": load_average(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=3, help="rescans per size")
    parser.add_argument("--scratch", type=Path, help="where the files go (default: a temp dir)")
    args = parser.parse_args()
    work = OUT_DIR / "rescan_bench"
    work.mkdir(parents=True, exist_ok=True)
    server = start_on_free_ports(work / "tritonserver.log")
    try:
        with TricolorClient(server.grpc_url) as client:
            provenance = read_provenance(client, probe_image())
        for size in args.sizes:
            with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
                url, root = f"sqlite:///{scratch}/catalogue.db", Path(scratch) / "library"
                started = time.perf_counter()
                synthetic_catalogue(url, size, provenance=provenance)
                made = make_files(url, root)
                print(f"{size} pictures, {made} files on disk in "
                      f"{time.perf_counter() - started:.0f} s (load {load_average()})",
                      file=sys.stderr, flush=True)  # fmt: skip
                runs = [rescan(root, url, server.grpc_url, work / f"label-{size}-{n}.log")
                        for n in range(args.rounds)]  # fmt: skip
                result = {
                    "pictures": size,
                    "files": made,
                    "median_files_per_s": statistics.median(run["files_per_s"] for run in runs),
                    "max_peak_rss_mib": max(run["peak_rss_mib"] for run in runs),
                    "runs": runs,
                }
                print(json.dumps(result), flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
