"""`make gpu-check`'s verdicts: a check that proved nothing is not "ok"."""

from __future__ import annotations

from deploy.gpu_check import PERF_CONCURRENCY, UNSTABLE, Outcome, combine, judge_sweep

ROWS = [{"Concurrency": str(level), "Inferences/Second": "120.5"} for level in PERF_CONCURRENCY]
# what perf_analyzer 2.51 prints when a level never settles; it still exits 0
UNSTABLE_OUTPUT = (
    f"{UNSTABLE} within 10 measurement windows for concurrency 7. Please try to increase "
    "the --measurement-interval."
)


def test_a_stable_sweep_is_ok_and_says_what_it_measured() -> None:
    outcome = judge_sweep("classify (batch 1)", 0, "", ROWS)
    assert outcome.verdict == "ok"
    assert outcome.saw == "classify (batch 1): c1 120/s, c3 120/s, c5 120/s, c7 120/s"


def test_an_unstable_sweep_proves_nothing() -> None:
    unstable = judge_sweep("classify (batch 1)", 0, UNSTABLE_OUTPUT, ROWS[:3])
    assert unstable.verdict == "NO PROOF" and "no stable measurement" in unstable.saw
    assert judge_sweep("resnet50 (batch 8)", 0, "", ROWS[:2]).verdict == "NO PROOF"


def test_a_failed_run_fails_and_a_failure_outweighs_no_proof() -> None:
    failed = judge_sweep("resnet50 (batch 8)", 99, "error", [])
    assert failed.verdict == "FAIL" and "perf_analyzer exited 99" in failed.saw
    unproven = Outcome(False, "unstable", proved=False)
    assert combine([unproven, failed]).verdict == "FAIL"
    assert combine([Outcome(True, "a"), unproven]).verdict == "NO PROOF"
    assert combine([Outcome(True, "a"), Outcome(True, "b")]).verdict == "ok"
