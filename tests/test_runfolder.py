"""The run folder: where each file is, and run.json written whole and read back with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from servetune import __version__
from servetune.config import LoadPhase, LoadProfile
from servetune.load.profile import parse_profile
from servetune.run_record import HostCpu, RunRecord, Step
from servetune.runfolder import RunFolder, RunFolderError, RunRecorder, StepFailed, headline_accuracy

RECORDED = Path(__file__).parent / "data" / "recorded-hpa50"


def test_run_json_is_replaced_whole_and_read_back(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.read_record() == RunRecord()  # a hand-made folder has none
    folder.write_record(RunRecord(name="a", status="running"))
    folder.write_record(RunRecord(name="a", status="completed"))
    assert json.loads(folder.record_file.read_text()) == {"status": "completed", "name": "a",
                                                          "servetune_version": __version__}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # no temporary file left behind


def test_a_record_round_trips_with_only_the_fields_set(tmp_path):
    folder = RunFolder(tmp_path)
    record = RunRecord(name="r", error=None, accuracy=0.75, steps=[Step(name="load", status="completed", seconds=2.5)],
                       host_cpu={"cores": 2, "others_cores": 0.25, "counts": "others"}, restart_reasons={"Error": 2},
                       live_accuracy={"accuracy": 0.5, "correct": 1, "n": 2, "wilson_95": [0.1, 0.9], "held_out": 3,
                                      "uploads": 6, "refused": {"503": 1}, "source": "held-out labels"})
    folder.write_record(record)
    written = json.loads(folder.record_file.read_text())
    assert written == {"error": None, "name": "r", "servetune_version": __version__,  # a null set stays null
                       "steps": [{"name": "load", "status": "completed", "seconds": 2.5}], "accuracy": 0.75,
                       "restart_reasons": {"Error": 2},
                       "live_accuracy": {"accuracy": 0.5, "correct": 1, "n": 2, "wilson_95": [0.1, 0.9], "held_out": 3,
                                         "uploads": 6, "refused": {"503": 1}, "source": "held-out labels"},
                       "host_cpu": {"cores": 2, "others_cores": 0.25, "counts": "others"}}
    back = folder.read_record()
    assert back == record and back.host_cpu == HostCpu(cores=2, others_cores=0.25, counts="others")
    folder.write_record(back)
    assert json.loads(folder.record_file.read_text()) == written


def test_fields_of_another_version_are_kept_and_a_misspelt_field_is_refused(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"name": "r", "from_the_future": {"a": 1}}))
    folder = RunFolder(tmp_path)
    record = folder.read_record()
    folder.write_record(record)
    assert json.loads(folder.record_file.read_text())["from_the_future"] == {"a": 1}
    with pytest.raises(TypeError, match="run.json has no field 'restart'"):
        record.set(restart=1)


@pytest.mark.parametrize("old_key", ["servetune", "servetune_version"])
def test_a_run_folder_with_either_old_version_key_reads(tmp_path, old_key):
    (tmp_path / "run.json").write_text(json.dumps({"name": "r", old_key: "0.1.0"}))
    folder = RunFolder(tmp_path)
    record = folder.read_record()
    assert record.servetune_version == "0.1.0"
    folder.write_record(record)
    assert json.loads(folder.record_file.read_text()) == {"name": "r", "servetune_version": "0.1.0"}


def test_the_committed_recorded_run_reads_through_the_typed_record():
    record = RunFolder(RECORDED).read_record()
    written = json.loads((RECORDED / "run.json").read_text())
    assert record.servetune_version == written["servetune"] and record.status == "completed"
    assert record.model_file is not None and record.model_file.sha256 == written["model_file"]["sha256"]
    assert [step.name for step in record.steps] == [step["name"] for step in written["steps"]]
    assert {**record.as_json(), "servetune": written["servetune"]} == {**written,
                                                                       "servetune_version": written["servetune"]}


@pytest.mark.parametrize(("text", "problem"), [
    ("{not json", "not readable JSON"), ("[1, 2]", "expected a JSON object"),
    ('{"status": "done"}', "not a run record: status: Input should be 'running', 'completed', 'failed' or 'interrupted'"),
    ('{"restarts": -1}', "not a run record: restarts: Input should be greater than or equal to 0"),
    ('{"host_cpu": {"cores": 2}}', "not a run record: host_cpu.others_cores: Field required"),
    ('{"steps": [{"name": "load"}]}', "not a run record: steps.0.status: Field required"),
])
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
    record = RunRecorder(folder, Console(file=open(tmp_path / "terminal.txt", "w")), RunRecord(name="r"))  # noqa: SIM115
    with record.step("prepare", "prepare"):
        pass
    with pytest.raises(StepFailed, match="disk full"), record.step("load", "load"):
        raise OSError("disk full")
    record.fail("tear-down", "later problem")
    saved = folder.read_record()
    assert saved.status == "failed" and saved.failed_step == "load" and saved.error == "disk full"
    assert [(s.name, s.status) for s in saved.steps] == [("prepare", "completed"), ("load", "failed")]
