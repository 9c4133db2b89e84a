"""The run folder: the one place that names its files, keeps its inputs and reads and writes run.json.

run.json is a `run_record.RunRecord`; `RunFolder.write_record` is the only code that writes it (stamping the
servetune version), and `RunRecorder` keeps it during a run. Every stage that writes into a run folder (the load drivers, the resource monitor, the evaluation protocol)
and every stage that reads one (analyze) takes its paths from `RunFolder`. Each CSV format is parsed by the
module that writes it (load/siege.py, load/request_log.py, monitor/resource_csv.py); this module only says
where each file is, so it sits below all of them. docs/architecture.md lists what a run folder holds.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import yaml
from pydantic import ValidationError
from rich.console import Console

from servetune import __version__
from servetune.config import LoadProfile
from servetune.errors import ServetuneError
from servetune.run_record import RunRecord, Status, Step

RUN_FILE = "run.json"
SPEC_FILE = "spec.yaml"
MANIFEST_FILE = "deployment.yaml"
RESOURCE_FILE = "resource_usage.csv"
LOAD_FILE = "load_output.csv"
REQUESTS_FILE = "requests.csv"
STATES_FILE = "replica_states.csv"
PROFILE_FILES = ("load_profile.yaml", "profile.yaml")  # the load drivers write the first; a hand-made folder may hold the second
SUMMARY_FILE = "summary.json"
EVENTS_FILE = "events.log"
LABELLING_FILE = "labelling.json"
CLUSTER_DIR = "cluster"

# The accuracy a run reports: the first of these splits that the model card has, else its first split.
ACCURACY_SPLITS = ("evaluation", "test", "validation")

class RunFolderError(ServetuneError):
    """A run folder file that cannot be read; the message names the file and the problem."""


def headline_accuracy(accuracy: Mapping[str, float]) -> tuple[str, float] | None:
    """(split, accuracy) that a run reports from a model card's accuracy by split; None when it has none."""
    for split in [*ACCURACY_SPLITS, *accuracy]:
        if split in accuracy:
            return split, accuracy[split]
    return None


class RunFolder:
    """The paths of one run folder and its run.json record."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.record_file = self.path / RUN_FILE
        self.resource_csv = self.path / RESOURCE_FILE
        self.load_log = self.path / LOAD_FILE
        self.request_log = self.path / REQUESTS_FILE
        self.replica_states = self.path / STATES_FILE
        self.profile_copy = self.path / PROFILE_FILES[0]
        self.summary_file = self.path / SUMMARY_FILE
        self.events_log = self.path / EVENTS_FILE
        self.labelling_file = self.path / LABELLING_FILE
        self.cluster_dir = self.path / CLUSTER_DIR

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def profile_file(self) -> Path | None:
        """The profile that ran, if the folder keeps one."""
        return next((self.path / n for n in PROFILE_FILES if (self.path / n).is_file()), None)

    def holds_a_run(self) -> bool:
        return self.record_file.exists()

    def was_measured(self) -> bool:
        """Both files analyze needs are there."""
        return self.resource_csv.is_file() and self.load_log.is_file()

    def keep_profile(self, profile: LoadProfile) -> None:
        """load_profile.yaml: the profile as it ran (compressed), so analyze can name each run's phase."""
        self.profile_copy.write_text(yaml.safe_dump(profile.model_dump(), sort_keys=False), encoding="utf-8")

    def read_record(self) -> RunRecord:
        """run.json, or an empty record in a folder without one (a hand-made run folder); RunFolderError
        naming the file and the field when it is not a run record."""
        path = self.record_file
        if not path.is_file():
            return RunRecord()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RunFolderError(f"{path}: not readable JSON: {error}") from None
        if not isinstance(data, dict):
            raise RunFolderError(f"{path}: expected a JSON object")
        try:
            return RunRecord.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'run.json'}: {e['msg']}"
                                 for e in error.errors())
            raise RunFolderError(f"{path}: not a run record: {problems}") from None

    def write_record(self, record: RunRecord) -> None:
        """Replace run.json in one step: a reader never sees half a file. The one writer of run.json."""
        if record.servetune_version is None:
            record.servetune_version = __version__
        temporary = self.record_file.with_name(f".{RUN_FILE}.tmp")
        temporary.write_text(json.dumps(record.as_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, self.record_file)


class StepFailed(RuntimeError):
    """A protocol step failed; its message is what run.json records as the error."""


def message_of(error: BaseException) -> str:
    return str(error) or type(error).__name__


class RunRecorder:
    """A run's run.json (`record`), rewritten after each change, and its step-by-step progress on the terminal."""

    def __init__(self, folder: RunFolder, console: Console, record: RunRecord) -> None:
        self.folder = folder
        self.console = console
        self._lock = threading.Lock()  # the monitor thread may record a failure
        record.set(status="running", failed_step=None, error=None, steps=[])
        self.record = record
        self.save()

    def save(self) -> None:
        with self._lock:
            self.folder.write_record(self.record)

    def update(self, **fields: object) -> None:
        """Set run.json fields (each checked against `RunRecord`) and save."""
        self.record.set(**fields)
        self.save()

    @contextmanager
    def step(self, name: str, description: str) -> Iterator[Step]:
        """Time one step; a failure marks the run failed (or interrupted on Ctrl-C) at this step."""
        entry = Step(name=name, status="running", started_at=time.time())
        self.record.steps.append(entry)
        self.save()
        number = len(self.record.steps)
        self.console.print(f"[bold cyan][{number}][/] {description} ...", highlight=False)
        began = time.monotonic()
        try:
            yield entry
        except KeyboardInterrupt:
            self._end(entry, began, "interrupted")
            self.fail(name, "interrupted (Ctrl-C)", "interrupted")
            raise
        except Exception as error:
            self._end(entry, began, "failed")
            self.fail(name, message_of(error))
            raise StepFailed(message_of(error)) from error
        self._end(entry, began, entry.outcome or "completed")
        mark = "[green]done[/]" if entry.status == "completed" else f"[yellow]{entry.status}[/]"
        self.console.print(f"    {mark} in {entry.seconds:.1f} s", highlight=False)

    def _end(self, entry: Step, began: float, status: Status) -> None:
        entry.status = status
        entry.ended_at = time.time()
        entry.seconds = round(time.monotonic() - began, 3)
        self.save()

    def fail(self, step: str, error: str, status: Status = "failed") -> None:
        """Record the first failure only: what broke first is what the user needs to read."""
        if self.record.status == "running":
            self.record.set(status=status, failed_step=step, error=error)
            self.save()
        colour = "yellow" if status == "interrupted" else "red"
        self.console.print(f"    [{colour}]{status}[/]: {error}", highlight=False)

    @property
    def running(self) -> bool:
        return self.record.status == "running"
