"""A training run killed with SIGKILL mid-run continues with --resume to the same end state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

CLI = [sys.executable, "-c", "from servetune.cli import app; app()"]


def train_command(data: Path, out: Path, *extra: str) -> list[str]:
    # augmentation, dropout and mixup all draw random numbers: the resumed run must draw the same ones
    return [*CLI, "model", "train", "--data", str(data), "--out", str(out), "--input-size", "48", "--views", "1",
            "--augment-every-epoch", "--mixup", "0.3", "--balance", "--finetune-blocks", "2", "--head-epochs", "2",
            "--finetune-epochs", "2", "--patience", "10", "--threads", "1", *extra]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def kill_after(command: list[str], log: Path, line: str, timeout: float = 240) -> None:
    """Start training, SIGKILL it as soon as its log shows `line` (a finished epoch), before it ends."""
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=environment())
    deadline = time.monotonic() + timeout
    try:
        while line not in log.read_text():
            assert process.poll() is None, f"training ended before '{line}': {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"no '{line}' within {timeout} s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL


def finish(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment(), check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.fixture(scope="module")
def reference(tiny_food11, tmp_path_factory) -> Path:
    """The same training, never interrupted."""
    out = tmp_path_factory.mktemp("reference")
    finish(train_command(tiny_food11, out))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("killed_at", ["stage 1 epoch 1:", "stage 2 epoch 1:"])
def test_killed_run_resumes_to_the_same_end_state(tiny_food11, reference, tmp_path, killed_at):
    killed = tmp_path / "killed"
    kill_after(train_command(tiny_food11, killed), tmp_path / "killed.log", killed_at)
    assert (killed / "checkpoint.pt").is_file() and not (killed / "model.pt").exists()
    finish(train_command(tiny_food11, killed, "--resume"))

    expected = torch.load(reference / "model.pt", weights_only=False)["state_dict"]
    resumed = torch.load(killed / "model.pt", weights_only=False)["state_dict"]
    assert expected.keys() == resumed.keys()
    different = [name for name in expected if not torch.equal(expected[name], resumed[name])]
    assert not different, f"weights differ after resuming: {different[:5]}"
    summaries = [json.loads((run / "train_summary.json").read_text()) for run in (reference, killed)]
    assert summaries[0]["stages"] == summaries[1]["stages"]  # the same losses and accuracies, epoch by epoch
    assert summaries[0]["validation_per_class"] == summaries[1]["validation_per_class"]
    assert [len(stage["history"]) for stage in summaries[1]["stages"]] == [2, 2]


@pytest.mark.slow
def test_a_stopped_run_resumed_with_fewer_epochs_keeps_its_best_epoch_so_far(tiny_food11, tmp_path):
    """A run stopped by a time limit: `--resume --finetune-epochs DONE` writes model.pt without training more."""
    stopped = tmp_path / "stopped"
    kill_after(train_command(tiny_food11, stopped), tmp_path / "stopped.log", "stage 2 epoch 1:")
    checkpoint = torch.load(stopped / "checkpoint.pt", weights_only=False)
    finish(train_command(tiny_food11, stopped, "--resume", "--finetune-epochs", "1"))
    written = torch.load(stopped / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(written[name], checkpoint["best"][name]) for name in written)
    summary = json.loads((stopped / "train_summary.json").read_text())
    assert [len(stage["history"]) for stage in summary["stages"]] == [2, 1]
