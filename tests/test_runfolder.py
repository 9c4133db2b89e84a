"""The run folder: where each file is, and run.json written whole and read back with clear errors."""

from __future__ import annotations

import pytest
from rich.console import Console

from servetune.config import LoadPhase, LoadProfile
from servetune.load.profile import parse_profile
from servetune.runfolder import RunFolder, RunFolderError, RunRecord, StepFailed, headline_accuracy


def test_run_json_is_replaced_whole_and_read_back(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.read_record() == {}  # a hand-made folder has none
    folder.write_record({"name": "a", "status": "running"})
    folder.write_record({"name": "a", "status": "completed"})
    assert folder.read_record() == {"name": "a", "status": "completed"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # no temporary file left behind


@pytest.mark.parametrize(("text", "problem"), [("{not json", "not readable JSON"), ("[1, 2]", "expected a JSON object")])
def test_a_bad_run_json_names_the_file(tmp_path, text, problem):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(RunFolderError, match=problem) as error:
        RunFolder(tmp_path).read_record()
    assert str(tmp_path / "run.json") in str(error.value)


def test_the_kept_profile_reads_back_as_it_ran(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.profile_file() is None
    profile = LoadProfile(name="p", time_scale=0.1, phases=[LoadPhase(users=3, delay=0.5, duration_s=6)])
    folder.keep_profile(profile)
    assert folder.profile_file() == tmp_path / "load_profile.yaml"
    assert parse_profile(folder.profile_file()) == profile


def test_the_reported_accuracy_prefers_the_evaluation_split():
    assert headline_accuracy({"validation": 0.7, "evaluation": 0.8}) == ("evaluation", 0.8)
    assert headline_accuracy({"validation": 0.7, "test": 0.75}) == ("test", 0.75)
    assert headline_accuracy({"holdout": 0.6}) == ("holdout", 0.6)
    assert headline_accuracy({}) is None


def test_a_failing_step_is_recorded_with_its_error_and_the_first_failure_wins(tmp_path):
    folder = RunFolder(tmp_path)
    record = RunRecord(folder, Console(file=open(tmp_path / "terminal.txt", "w")), {"name": "r"})  # noqa: SIM115
    with record.step("prepare", "prepare"):
        pass
    with pytest.raises(StepFailed, match="disk full"), record.step("load", "load"):
        raise OSError("disk full")
    record.fail("tear-down", "later problem")
    saved = folder.read_record()
    assert saved["status"] == "failed" and saved["failed_step"] == "load" and saved["error"] == "disk full"
    assert [(s["name"], s["status"]) for s in saved["steps"]] == [("prepare", "completed"), ("load", "failed")]
