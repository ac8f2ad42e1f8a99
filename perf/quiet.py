"""Is the machine quiet enough for numbers to mean something? Load and CPU steal from /proc.

A `Window` around each measurement records the load average and, from /proc/stat, how many
cores were busy, how many of those were this harness's own processes (this one, its servers
and their stubs, perf_analyzer) and how many someone else's, plus the hypervisor's steal.

Thresholds (`QUIET`): before the run, at most 0.15 cores busy with nothing of ours running
(5 s sampled); during each measurement, other processes at most 0.15 cores on average and
steal at most 2 % of the machine. On this 2-core VM 0.15 cores is 7.5 % of the capacity that a
saturating benchmark measures: more than that and a 6 % regression (issue 19's) drowns in it.
Steal is the same capacity taken by the host; 2 % is above what a quiet VM shows (0-0.5 %).
The 1-minute load average is recorded, not judged: it lags by a minute and counts our own load.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Thresholds:
    idle_cores: float = 0.15  # busy cores before the run, nothing of ours running
    foreign_cores: float = 0.15  # other processes' cores during a measurement
    steal: float = 0.02  # fraction of the machine's CPU time stolen by the host


QUIET = Thresholds()


@dataclass
class MachineLoad:
    """One window: what the machine did while we measured (or idled, for the baseline)."""

    seconds: float
    load_average: str  # 1 / 5 / 15 minutes, at the window's end
    busy_cores: float  # every process, from /proc/stat
    own_cores: float  # this process and its descendants
    foreign_cores: float  # busy - own: someone else's work
    steal: float  # fraction of all cores' time

    def problems(self, thresholds: Thresholds = QUIET, baseline: bool = False) -> list[str]:
        found = []
        if baseline and self.busy_cores > thresholds.idle_cores:
            found.append(
                f"{self.busy_cores:.2f} cores busy before the run (> {thresholds.idle_cores})"
            )
        if not baseline and self.foreign_cores > thresholds.foreign_cores:
            found.append(
                f"other processes used {self.foreign_cores:.2f} cores "
                f"(> {thresholds.foreign_cores})"
            )
        if self.steal > thresholds.steal:
            found.append(f"steal {100 * self.steal:.1f} % (> {100 * thresholds.steal:.0f} %)")
        return found

    def text(self) -> str:
        return (
            f"load {self.load_average}, busy {self.busy_cores:.2f} cores "
            f"(ours {self.own_cores:.2f}, others {self.foreign_cores:.2f}), "
            f"steal {100 * self.steal:.1f} %"
        )


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def cpu_jiffies() -> tuple[int, int, int]:
    """(all, busy, steal) jiffies of all cores so far, from /proc/stat's `cpu` line. Busy is
    user + nice + system, what processes are charged with (guest time is inside user); irq and
    softirq time (our own loopback traffic, mostly) is neither ours nor someone else's."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + idle + iowait + irq + softirq + steal, user + nice + system, steal


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of `root` and its live descendants so far."""
    total, pending = 0.0, [root]
    while pending:
        pid = pending.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        pending += _children(pid)
    return total


def own_cpu_seconds() -> float:
    """This process, its live descendants and its reaped children (perf_analyzer runs)."""
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return tree_cpu_seconds(os.getpid()) + reaped.ru_utime + reaped.ru_stime


class Window:
    """`with Window() as window: ...` then `window.load`: the machine during the block."""

    def __enter__(self) -> Window:
        self.started = time.monotonic()
        self.jiffies = cpu_jiffies()
        self.own = own_cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        seconds = time.monotonic() - self.started
        total, busy, steal = (
            end - start for end, start in zip(cpu_jiffies(), self.jiffies, strict=True)
        )
        cores = os.cpu_count() or 1
        busy_cores = busy / max(total, 1) * cores
        own_cores = (own_cpu_seconds() - self.own) / max(seconds, 1e-9)
        self.load = MachineLoad(
            seconds=seconds,
            load_average=load_average(),
            busy_cores=busy_cores,
            own_cores=own_cores,
            foreign_cores=max(busy_cores - own_cores, 0.0),
            steal=steal / max(total, 1),
        )


def idle_baseline(seconds: float = 5.0) -> MachineLoad:
    """The machine before anything of ours runs: sampled for `seconds`."""
    with Window() as window:
        time.sleep(seconds)  # sampling the machine for a fixed window is the measurement
    return window.load


def verdict(baseline: MachineLoad, windows: list[MachineLoad]) -> list[str]:
    """Why this run's numbers are not results (empty: quiet throughout)."""
    problems = [f"before the run: {p}" for p in baseline.problems(baseline=True)]
    for index, window in enumerate(windows):
        problems += [f"measurement {index + 1}: {p}" for p in window.problems()]
    return problems
