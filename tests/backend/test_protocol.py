"""A backend that computes what would happen instead of running replicas (as a simulator does) fits the
protocol: run.py calls its steps in order, its measure step writes the run folder's files itself, and the
run is analysed like any other."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from rich.console import Console

from servetune.backend.protocol import Backend, Measurement
from servetune.config import LoadRunRow, ResourceSample
from servetune.deploy.spec import load_deployment_spec
from servetune.load.siege import write_siege_log
from servetune.monitor.resource_csv import ResourceCsvWriter
from servetune.run import RunOptions, evaluate
from servetune.runfolder import RunRecorder


class ComputedBackend:
    """Two replicas answering 10 requests per second at 0.2 s, for every run of the profile."""

    name = "computed"
    warm_up_description = "nothing to warm"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def warm_up(self) -> str:
        self.calls.append("warm_up")
        return "nothing to load"

    def apply(self) -> str:
        self.calls.append("apply")
        return "2 replicas"

    def wait_ready(self) -> str:
        self.calls.append("wait_ready")
        return "2/2 ready"

    @property
    def url(self) -> str:
        return "computed://"

    def limits(self) -> dict:
        return {"limits_enforced": False, "limits_note": "computed"}

    def measure(self, measurement: Measurement, recorder: RunRecorder) -> str:
        self.calls.append("measure")
        folder, runs = measurement.folder, measurement.profile.runs()
        start = datetime(2026, 11, 30, 10, 0, 0)

        def at(second: int) -> str:
            return (start + timedelta(seconds=second)).strftime("%Y-%m-%d %H:%M:%S")

        rows = [
            LoadRunRow(date_time=at(10 * (i + 1)), trans=100, elap_time=10.0, data_trans=0.1,
                       resp_time=0.2, trans_rate=10.0, throughput=0.01, concurrent=2.0, okay=100, failed=0)
            for i in range(len(runs))
        ]
        write_siege_log(folder.load_log, rows)
        with ResourceCsvWriter(folder.resource_csv) as writer:
            for second in range(0, 10 * len(runs), 5):
                writer.write(ResourceSample(
                    time=at(second), n_replica=2, cpu_req_core=1.0,
                    mem_req_KB=2048.0, cpu_lim_core=2.0, mem_lim_KB=4096.0, cpu_use_core=0.5, mem_use_KB=1024.0,
                ))
        folder.keep_profile(measurement.profile)
        return "completed"

    def tear_down(self) -> str:
        self.calls.append("tear_down")
        return "nothing to delete"


def test_a_backend_that_writes_the_files_itself_runs_the_whole_protocol(tmp_path: Path):
    backend = ComputedBackend()
    typed: Backend = backend  # the protocol, checked by the type checker
    options = RunOptions(spec="default", out=tmp_path / "run", profile="quick", time_scale=0.01, copy_model=False,
                         progress=False)
    result = evaluate(options, Console(file=open(tmp_path / "terminal.txt", "w")), typed)  # noqa: SIM115
    assert backend.calls == ["warm_up", "apply", "wait_ready", "measure", "tear_down"]
    assert result.status == "completed" and result.record.backend == "computed"
    assert [step.name for step in result.record.steps] == ["prepare", "warm-up", "apply", "load", "tear-down"]
    assert result.record.analysis == "completed" and result.report == tmp_path / "run" / "report.html"
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert '"transaction_rate": 10.0' in summary and '"memory_requested_KB": 2048.0' in summary
    assert result.summary is not None and result.summary.model_dump_json(indent=2) + "\n" == summary  # made once


def test_a_spec_the_caller_holds_runs_as_it_is_and_run_json_names_where_it_was_written(tmp_path: Path):
    spec = load_deployment_spec("default").model_copy(update={"name": "held", "replicas": 3})
    written = tmp_path / "specs" / "c0001.yaml"  # the tune writes it for the user; the run does not read it back
    options = RunOptions(spec=str(written), deployment=spec, out=tmp_path / "run", profile="quick", time_scale=0.01,
                         copy_model=False, progress=False)
    result = evaluate(options, Console(file=open(tmp_path / "terminal.txt", "w")), ComputedBackend())  # noqa: SIM115
    assert result.status == "completed" and result.record.spec == str(written)
    assert load_deployment_spec(tmp_path / "run" / "spec.yaml") == spec
