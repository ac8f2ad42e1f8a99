"""What a perf run measured, typed: written by perf.run (and perf.raw_limit, the peer bench),
read by the report, the plots and perf.compare. One module owns the format: `dump` writes any of
these dataclasses as JSON, `load` reads it back and fails on a missing or unknown field."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import dacite

from .quiet import MachineLoad

T = TypeVar("T")


def dump(value: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(value), indent=2))


def load(kind: type[T], path: Path) -> T:
    try:
        return dacite.from_dict(kind, json.loads(path.read_text()), dacite.Config(strict=True))
    except (dacite.DaciteError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a {kind.__name__}: {exc}") from exc


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    memory: str
    kernel: str
    python: str


@dataclass
class ModelBreakdown:
    """One composing model during one measurement (Triton's statistics, differenced)."""

    requests: int
    executions: int
    inferences: int
    mean_batch: float
    ms: dict[str, float]  # mean ms per request: "success" and each of client.STAT_PHASES


@dataclass
class Measurement:
    """One perf_analyzer call: one level of one sweep."""

    model: str
    mode: str  # "concurrency" or "request_rate"
    level: float
    batch_size: int
    row: dict[str, float]  # perf_analyzer's CSV row (latencies in microseconds)
    models: dict[str, ModelBreakdown] = field(default_factory=dict)
    metrics_collected: bool = False
    # CPU core-ms per image by process ("tritonserver", a model's stubs, "perf_analyzer")
    cpu_ms_per_image: dict[str, float] = field(default_factory=dict)
    cores_busy: float = 0.0  # their CPU seconds per wall second while perf_analyzer ran

    @property
    def throughput(self) -> float:
        return self.row["Inferences/Second"]

    def latency_ms(self, column: str) -> float:
        return self.row[column] / 1000.0

    @property
    def non_model_core_ms(self) -> float:
        """Core-ms per image spent outside resnet50."""
        return sum(self.cpu_ms_per_image.values()) - self.cpu_ms_per_image.get("resnet50", 0.0)


@dataclass
class SweepPoint:
    run: str  # the [[run]] name in perf/sweeps.toml
    level: float
    load: str
    result: Measurement | None = None
    error: str | None = None  # instead of a result
    machine_load: MachineLoad | None = None  # the machine while it was measured (perf.quiet)


@dataclass
class Interleaved:
    """perf.interleaved: served `classify` and the in-process pipeline, alternating rounds."""

    concurrency: int
    batch: int
    served: list[float]  # images/s per round
    in_process: list[float]
    ratio_median: float
    ratio_min: float
    ratio_max: float


@dataclass
class LatencySummary:
    p50_ms: float
    p99_ms: float
    mean_ms: float


@dataclass
class Paired:
    """Concurrency 1, served and in-process interleaved photo by photo (perf.paired)."""

    requests: int
    threads: int
    served: LatencySummary
    in_process: LatencySummary
    per_photo_p50_ms: dict[str, dict[str, float]]  # photo -> "served" / "in_process" -> ms


@dataclass
class RawRow:
    runtime: str
    model: str
    sessions: int
    threads: int
    batch: int
    images_per_s: float
    p50_ms: float | None  # per batch; None for sessions run side by side
    p99_ms: float | None
    runs: int


@dataclass
class Decode:
    images: int
    mean_ms: float
    median_ms: float
    max_ms: float
    per_image_ms: dict[str, float]


@dataclass
class RawLimit:
    """The same ONNX in-process, no server (perf.raw_limit)."""

    rows: list[RawRow]
    decode: Decode
    best: RawRow
    batch1: RawRow
    load_before: list[float]
    load_after: list[float]


@dataclass
class ClosedLoopRow:
    """perf.closed_loop at one concurrency (several rounds pooled)."""

    concurrency: int
    requests: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float | None
    p99_ms: float | None
    load: str
    round_throughputs: list[float] = field(default_factory=list)  # the spread of the repeats
    round_p99_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class PeerConfiguration:
    """How a peer runs its workers; threads None: torch's own default (all cores)."""

    name: str
    workers: int
    threads: int | None
    pinned: bool  # TorchServe's CPU launcher: cpu_launcher_enable=true, --use_logical_core
    max_batch_size: int = 1  # LitServe's batching (TorchServe's handler: one image a call)


@dataclass
class PeerRows:
    configuration: PeerConfiguration
    worker_cpus: list[list[int]]  # each worker's CPU affinity as TorchServe ran it
    rows: list[ClosedLoopRow]

    def at(self, concurrency: int) -> ClosedLoopRow | None:
        return next((row for row in self.rows if row.concurrency == concurrency), None)


@dataclass
class PeerComparison:
    """tricolor's `classify` and each configuration of one peer (TorchServe, LitServe) in turn,
    alternated with tricolor while it runs alone (perf.peers)."""

    started: str
    rounds: int
    seconds: float
    tricolor: list[ClosedLoopRow]
    peers: list[PeerRows]  # one per configuration of the peer server
    machine_loads: list[MachineLoad] = field(default_factory=list)  # one per closed loop

    def best(self) -> PeerRows:
        """The TorchServe configuration with the highest throughput, summed over concurrencies."""
        return max(self.peers, key=lambda peer: sum(row.throughput for row in peer.rows))

    def fastest_at(self, concurrency: int) -> tuple[PeerRows, ClosedLoopRow] | None:
        """The TorchServe configuration fastest at this concurrency, and its row."""
        measured = [(peer, peer.at(concurrency)) for peer in self.peers]
        measured = [(peer, row) for peer, row in measured if row is not None and row.throughput]
        return max(measured, key=lambda pair: pair[1].throughput, default=None)


@dataclass
class Int8Report:
    """What build_engines/quantize.py writes (it runs in .venv-export, without this module)."""

    model: str
    size_mb: dict[str, float]
    calibration_images: int
    held_out_photos: list[str]
    top1_agreement: float
    top5_overlap: float
    top1_score_abs_diff_mean: float
    top1_score_abs_diff_max: float
    logit_cosine_min: float
    batch1_ms: dict[str, float]
    speedup_batch1: float


@dataclass(frozen=True)
class ModelLimit:
    """The model-only rate a run's served rate is held against, and where it came from."""

    images_per_s: float
    core_ms: float  # CPU core-ms per image at that rate, on all of the machine's cores
    source: str


@dataclass
class Summary:
    """One `perf.run`, under perf/out/<label>/summary.json."""

    label: str
    started: str
    machine: Machine
    overrides: list[str]
    load_start: str
    load_end: str = ""
    sweeps: list[SweepPoint] = field(default_factory=list)
    paired: Paired | None = None
    interleaved: Interleaved | None = None
    raw: RawLimit | None = None
    peer: PeerComparison | None = None
    peer_missing: str | None = None  # why the peer was not measured
    litserve: PeerComparison | None = None
    litserve_missing: str | None = None
    # perf.quiet: the machine before the run and during each measurement, and its verdict
    quiet_baseline: MachineLoad | None = None
    machine_loads: list[MachineLoad] = field(default_factory=list)  # paired, raw limit
    not_quiet: list[str] = field(default_factory=list)  # why these are not results

    def all_machine_loads(self) -> list[MachineLoad]:
        sweeps = [point.machine_load for point in self.sweeps if point.machine_load]
        peers = [
            loads for peer in (self.peer, self.litserve) if peer for loads in peer.machine_loads
        ]
        return [*sweeps, *peers, *self.machine_loads]

    def measured(self, run: str) -> list[Measurement]:
        """The successful levels of one sweep, by level."""
        points = [p for p in self.sweeps if p.run == run and p.result is not None]
        return [p.result for p in sorted(points, key=lambda p: p.level) if p.result is not None]

    def runs(self) -> dict[str, list[SweepPoint]]:
        grouped: dict[str, list[SweepPoint]] = {}
        for point in self.sweeps:
            grouped.setdefault(point.run, []).append(point)
        return grouped

    def model_limit(self) -> ModelLimit | None:
        """The in-process best, unless `resnet50` alone through Triton went faster in this run.

        A server cannot beat the same ONNX in-process, so then the in-process runs caught a
        slower minute of this shared VM and the served model-only rate is the truer (and
        stricter) limit.
        """
        if self.raw is None:
            return None
        best = self.raw.best
        source = (
            f"in-process {best.runtime}, batch {best.batch}, "
            f"{best.sessions} x {best.threads} threads"
        )
        rate = best.images_per_s
        served = [
            (point, point.result)
            for point in self.sweeps
            if point.run in ("resnet50_online", "resnet50_offline") and point.result is not None
        ]
        fastest = max(served, key=lambda pair: pair[1].throughput, default=None)
        if fastest is not None and fastest[1].throughput > rate:
            point, result = fastest
            source = (
                f"`resnet50` alone through Triton ({point.run}, concurrency {point.level:g}), "
                f"faster than the in-process best of this run ({rate:.2f}/s, {source}), which "
                "therefore ran in a slower minute"
            )
            rate = result.throughput
        return ModelLimit(rate, 1000 * self.machine.cores / rate, source)
