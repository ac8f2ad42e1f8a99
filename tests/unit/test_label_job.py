"""The Kubernetes Job that labels a collection in shards: it validates, and what each exit code
of `tricolor label` becomes (a done shard, a retried pod, a failed index), run through the
container's own shell command with a stand-in `tricolor` that exits with that code."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from tricolor.catalogue.commands import (
    EXIT_BUG,
    EXIT_DONE,
    EXIT_INTERRUPTED,
    EXIT_NO_SERVER,
    EXIT_REFUSED,
    EXIT_UNFINISHED,
    EXIT_USAGE,
)

JOB = Path(__file__).parents[2] / "deploy" / "k8s" / "catalogue" / "label-job.yaml"
VENV_BIN = Path(__file__).parents[2] / ".venv" / "bin"


@pytest.fixture(scope="module")
def job() -> dict:
    return yaml.safe_load(JOB.read_text())


def test_the_job_validates_strictly() -> None:
    done = subprocess.run(
        [str(VENV_BIN / "kubernetes-validate"), "--strict", "--quiet", str(JOB)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def pod_exit(job: dict, label_exit: int, tmp_path: Path) -> int:
    """The container's command, with `tricolor` exiting `label_exit`."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    stand_in = tmp_path / "tricolor"
    stand_in.write_text(f"#!/bin/sh\nexit {label_exit}\n")
    stand_in.chmod(0o755)
    environment = {
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "JOB_COMPLETION_INDEX": "0",
        **{item["name"]: item.get("value", "") for item in container["env"]},
    }
    return subprocess.run(
        [*container["command"], *container["args"]], env=environment, timeout=30
    ).returncode


def policy_action(job: dict, code: int) -> str:
    """What the Job does with a pod that exited `code` (Kubernetes' podFailurePolicy rules,
    first match; no match: counted against backoffLimitPerIndex, so the index is retried)."""
    if code == 0:
        return "Succeeded"
    for rule in job["spec"]["podFailurePolicy"]["rules"]:
        codes = rule.get("onExitCodes")
        if codes and codes["operator"] == "In" and code in codes["values"]:
            return rule["action"]
        if codes and codes["operator"] == "NotIn" and code not in codes["values"]:
            return rule["action"]
    return "Count"


@pytest.mark.parametrize(
    ("label_exit", "expected"),
    [
        (EXIT_DONE, "Succeeded"),
        (EXIT_REFUSED, "Succeeded"),  # refusals are stored: the shard is done
        (EXIT_BUG, "Count"),  # a crash is retried, never marked complete
        (EXIT_NO_SERVER, "Count"),
        (EXIT_UNFINISHED, "Count"),
        (EXIT_INTERRUPTED[signal.SIGTERM], "Count"),
        (EXIT_USAGE, "FailIndex"),  # retrying a bad command cannot help
    ],
)
def test_each_exit_code_of_label_becomes_what_the_job_must_do(
    job: dict, tmp_path: Path, label_exit: int, expected: str
) -> None:
    code = pod_exit(job, label_exit, tmp_path)
    assert policy_action(job, code) == expected
    if expected == "Count":
        assert job["spec"]["backoffLimitPerIndex"] >= 1
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy needs it
