"""The load + monitor step of a backend with real replicas: the resource monitor (a thread) takes its first
sample, then the load profile starts at once in this thread; both run on this process's wall clock and stop
together, when the load ends, fails or is stopped by Ctrl-C. What a sample's reference columns cannot say
(replicas by state, usage not measured yet) goes to replica_states.csv, row for row. run.json's `host_cpu`
says what else the machine's CPU did meanwhile (host/machine_cpu.py)."""

from __future__ import annotations

import threading
import time

from servetune.backend.protocol import LiveBackend, Measurement
from servetune.host.machine_cpu import host_cpu, snapshot
from servetune.labels.stats import wilson_interval
from servetune.load.driver import LoadOptions
from servetune.load.labelling_users import LabellingPlan, LabellingTally, LabellingUsers, write_tally
from servetune.load.runner import run_with_driver
from servetune.monitor.replica_states import ReplicaStatesWriter
from servetune.runfolder import RunFolder, RunRecorder, StepFailed, message_of

FIRST_SAMPLE_WAIT_S = 30.0


def load_and_monitor(backend: LiveBackend, measurement: Measurement, recorder: RunRecorder) -> str:
    """Measure into the run folder; returns the step's outcome (completed, interrupted or failed)."""
    folder, interval = measurement.folder, measurement.monitor_interval_s
    stop_monitor = threading.Event()
    stop_load = threading.Event()
    first_sample = threading.Event()
    monitor_error: list[BaseException] = []
    samples: list[float] = []
    states: list[ReplicaStatesWriter] = []

    def on_sample(sample) -> None:
        samples.append(time.time())
        if sample.states is not None:
            if not states:
                states.append(ReplicaStatesWriter(folder.replica_states))
            states[0].write(sample.states.model_copy(update={"time": sample.time}))
        first_sample.set()
        if not stop_load.is_set() and (failure := backend.failure()) is not None:
            recorder.fail("load", f"the deployment failed during the load: {failure}")
            stop_load.set()

    def monitor() -> None:
        try:
            backend.monitor(folder.resource_csv, interval, stop_monitor, on_sample)
        except Exception as error:  # noqa: BLE001 - reported in run.json; the load stops with it
            monitor_error.append(error)
            stop_load.set()
        finally:
            first_sample.set()

    thread = threading.Thread(target=monitor, name="resource-monitor", daemon=True)
    thread.start()
    try:
        first_sample.wait(timeout=max(FIRST_SAMPLE_WAIT_S, 3 * interval))
        if monitor_error:
            raise StepFailed(f"resource monitor: {message_of(monitor_error[0])}")
        recorder.update(load_started_at=time.time(), monitor_first_sample_at=samples[0] if samples else None)
        cpu_at_start = snapshot()
        labelling = LabellingUsers(measurement.labelling, backend.url) if measurement.labelling else None
        if labelling is not None:
            labelling.start()
        try:
            run_with_driver(measurement.driver, measurement.profile, backend.url, folder.path,
                            LoadOptions(progress=measurement.progress), stop_load)
        finally:
            if labelling is not None:
                recorder.update(live_accuracy=live_accuracy(measurement.labelling, labelling.stop(), folder))
        recorder.update(host_cpu=host_cpu(cpu_at_start, snapshot(), backend.host_cpu_counts))
        if measurement.progress and not recorder.console.is_terminal:
            recorder.console.line()  # the live view's last frame ends without a newline when not on a terminal
        recorder.update(load_ended_at=time.time())
    finally:
        stop_monitor.set()
        thread.join(timeout=30)
        for writer in states:
            writer.close()
        recorder.update(monitor_samples=len(samples))
    if monitor_error:
        raise StepFailed(f"resource monitor: {message_of(monitor_error[0])}")
    if stop_load.is_set() and recorder.running:
        # The load driver sets the stop event on the first Ctrl-C and returns the rows measured so far.
        recorder.fail("load", "interrupted (Ctrl-C): the load stopped early", "interrupted")
        return "interrupted"
    return "completed" if recorder.running else "failed"


def live_accuracy(plan: LabellingPlan, tally: LabellingTally, folder: RunFolder) -> dict:
    """run.json's `live_accuracy`: the labelling users' held-out labels that the deployment accepted, how
    often its model agreed, with the 95 % Wilson interval; their whole tally goes to labelling.json."""
    counts = write_tally(folder.labelling_file, plan, tally)
    correct, n = counts["correct"], counts["accepted"]
    low, high = wilson_interval(correct, n)
    return {
        "accuracy": correct / n if n else None, "correct": correct, "n": n, "wilson_95": [low, high],
        "held_out": counts["held_out"], "uploads": counts["uploads"], "refused": counts["refused"],
        "source": f"held-out labels of {plan.users} labelling users ({plan.source})",
    }
