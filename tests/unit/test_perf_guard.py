"""The perf harness's judgement, without a server: when a machine is too busy for results
(perf.quiet), when perf.ab calls a difference a regression, and the peer goals."""

from __future__ import annotations

from pathlib import Path

import pytest

from perf.ab import differences, regressions
from perf.quiet import QUIET, MachineLoad, Window, verdict
from perf.report import litserve_goal, litserve_section, peer_goal
from perf.report import main as report_main
from perf.summary import (
    ClosedLoopRow,
    Machine,
    PeerComparison,
    PeerConfiguration,
    PeerRows,
    Summary,
    dump,
)


def load(busy: float = 1.0, own: float = 1.0, steal: float = 0.0) -> MachineLoad:
    return MachineLoad(10.0, "0 / 0 / 0", busy, own, max(busy - own, 0.0), steal)


def test_quiet_thresholds() -> None:
    assert verdict(load(busy=0.05, own=0.0), [load(), load(busy=2.0, own=1.9)]) == []
    problems = verdict(load(busy=0.5, own=0.0), [load(busy=2.0, own=1.0), load(steal=0.05)])
    assert len(problems) == 3
    assert problems[0].startswith("before the run: 0.50 cores busy")
    assert "other processes used 1.00 cores" in problems[1]
    assert "steal 5.0 %" in problems[2]
    assert QUIET.foreign_cores < 0.25  # a tenth of 2 cores would hide issue 19's 6 %


def test_window_counts_this_process_as_its_own() -> None:
    with Window() as window:
        total = 0
        for value in range(3_000_000):  # about a third of a second of our own CPU
            total += value
    assert window.load.own_cores > 0
    assert 0 <= window.load.steal <= 1
    assert window.load.busy_cores >= 0


def test_a_regression_needs_to_exceed_noise_and_tolerance() -> None:
    base = [{"images/s": 40.0, "p99 ms": 300.0}, {"images/s": 42.0, "p99 ms": 310.0}] * 2
    same = [{"images/s": 40.2, "p99 ms": 301.0}, {"images/s": 41.7, "p99 ms": 309.0}] * 2
    slower = [{"images/s": 37.0, "p99 ms": 330.0}, {"images/s": 39.4, "p99 ms": 338.0}] * 2
    assert regressions(differences(base, same), tolerance=0.02) == []
    found = regressions(differences(base, slower), tolerance=0.02)
    assert [text.split(":")[0] for text in found] == ["images/s", "p99 ms"]
    noisy = [{"images/s": 30.0, "p99 ms": 300.0}, {"images/s": 50.0, "p99 ms": 310.0}] * 2
    assert regressions(differences(base, noisy), tolerance=0.02) == []
    change = differences(base, slower)[0]
    assert change.change == pytest.approx(((37 - 40) / 40 + (39.4 - 42) / 42) / 2)


def closed_loop_row(concurrency: int, throughput: float, p99s: list[float]) -> ClosedLoopRow:
    return ClosedLoopRow(
        concurrency, 100, 0, 10.0, throughput, 20.0, max(p99s), "0.1",
        round_throughputs=[throughput * 0.95, throughput * 1.05], round_p99_ms=p99s,
    )  # fmt: skip


def comparison(peer_rate: float, peer_p99: float) -> PeerComparison:
    levels = (1, 2, 4)
    configuration = PeerConfiguration("2 x 1", workers=2, threads=1, pinned=False)
    rows = [closed_loop_row(level, peer_rate, [peer_p99, peer_p99 + 5]) for level in levels]
    return PeerComparison(
        started="2026-12-07T03:00:00+00:00",
        rounds=2,
        seconds=10.0,
        tricolor=[closed_loop_row(level, 30.0, [40.0, 50.0]) for level in levels],
        peers=[PeerRows(configuration, [[0], [1]], rows)],
    )


def test_peer_goals_need_the_speed_and_every_repeats_p99() -> None:
    assert peer_goal(comparison(10.0, 60.0), None)[0].endswith("| yes |")  # 3x, p99 50 < 60
    assert peer_goal(comparison(20.0, 60.0), None)[0].endswith("| no |")  # 1.5x: not 2x
    assert litserve_goal(comparison(20.0, 60.0), None)[0].endswith("| yes |")  # 1.5x is enough
    # tricolor's worst repeat (50 ms) above the peer's best (45 ms): not lower in every repeat
    assert litserve_goal(comparison(10.0, 45.0), None)[0].endswith("| no |")
    assert "not measured: no .venv-litserve" in litserve_goal(None, "no .venv-litserve")[0]
    section = "\n".join(litserve_section(comparison(10.0, 60.0)))
    assert "[28.5-31.5]" in section and "| **tricolor** |" in section


def test_report_refuses_a_busy_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    machine = Machine("cpu", 2, "1 GiB", "6", "3.11")
    summary = Summary("busy", "2026-12-07T03:00:00+00:00", machine, [], "0", "0")
    summary.quiet_baseline = load(busy=1.2, own=0.0)
    summary.not_quiet = ["before the run: 1.20 cores busy before the run (> 0.15)"]
    dump(summary, tmp_path / "summary.json")
    out = tmp_path / "RESULTS.md"
    monkeypatch.setattr("sys.argv", ["report", str(tmp_path / "summary.json"), "--out", str(out)])
    with pytest.raises(SystemExit, match="the machine was busy: before the run: 1.20 cores"):
        report_main()
    assert not out.exists()
