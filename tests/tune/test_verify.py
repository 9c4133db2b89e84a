"""The verdict on a real run folder: the recorded run of tests/data judged against bounds from a baseline's
measured statistics."""

from pathlib import Path

import pytest

from servetune.analyze.stats import summarize
from servetune.tune.constraints import Constraints, baseline_bounds
from servetune.tune.verify import Repeat, judge, run_dirs

RUN = Path(__file__).parents[1] / "data" / "recorded-hpa50"


def judged(baseline):
    bar = baseline_bounds(Constraints(), {"default": baseline}, "measured", better_than=["default"])
    measured = summarize(RUN)
    return judge("c0001 candidate", RUN / "spec.yaml", [Repeat(RUN, "completed", None, measured)], measured, bar)


def test_a_run_that_requested_more_than_the_measured_baseline_fails_verification():
    measured = summarize(RUN)
    leaner = measured.model_copy(update={"memory_requested_KB": measured.memory_requested_KB * 0.9,
                                         "cpu_requested_core": measured.cpu_requested_core * 0.8})
    verification = judged(leaner)
    assert not verification.passed
    memory, cpu = verification.violations
    assert memory.amount == pytest.approx(1 / 0.9 - 1) and cpu.amount == pytest.approx(1 / 0.8 - 1)
    verdict = verification.verdict()
    assert verdict.startswith("failed verification: memory requested 459 MiB > 413 MiB "
                              "(the measured memory requested of default, --better-than); CPU requested"), verdict
    assert "(the measured CPU requested of default, --better-than)" in verdict


def test_a_run_no_worse_than_the_measured_baseline_is_verified():
    assert judged(summarize(RUN)).verdict() == "verified"
    faster = summarize(RUN).model_copy(update={"response_time_s": 0.5})
    assert judged(faster).verdict().startswith("failed verification: response time 729.0 ms > 500.0 ms")


def test_one_run_goes_into_its_folder_and_repeats_into_numbered_ones(tmp_path):
    assert run_dirs(tmp_path / "c0001", 1) == [tmp_path / "c0001"]
    assert run_dirs(tmp_path / "c0001", 3) == [tmp_path / f"c0001-r{n}" for n in (1, 2, 3)]


def test_a_run_on_a_machine_others_used_is_noted():
    measured = summarize(RUN)
    quiet, busy = (measured.model_copy(update={"others_cores": cores}) for cores in (0.1, 1.84))
    repeats = [Repeat(Path("c0001-r1"), "completed", None, quiet), Repeat(Path("c0001-r2"), "completed", None, busy),
               Repeat(Path("c0001-r3"), "completed", None, measured)]  # an older run: not recorded
    verification = judge("c0001 candidate", RUN / "spec.yaml", repeats, measured, Constraints())
    assert verification.shared_machine_notes() == [(
        "c0001-r2: other processes took 1.84 cores during the load; the replicas got less than on a quiet "
        "machine, so its response time reads slow")]
    assert verification.passed  # a note, not a verdict: the figures are what was measured


def test_a_repeat_that_did_not_complete_fails_verification_and_is_named():
    measured = summarize(RUN)
    repeats = [Repeat(RUN, "completed", None, measured), Repeat(RUN, "failed", "the cluster died", None)]
    verification = judge("c0001 candidate", RUN / "spec.yaml", repeats, measured, Constraints())
    assert verification.status == "failed" and not verification.passed
    assert verification.verdict() == "failed verification: run 2 of 2 failed (the cluster died)"
    assert verification.measured == [measured]
