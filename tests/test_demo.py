"""The demo's timing: the whole quick profile fits the 5-minute budget, and the autoscaler (its time constants
compressed by the same factor) has the time to scale up in the high phase and back down in the low tail."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from servetune.demo import (
    DEMO_PROFILE,
    DEMO_SPEC,
    DEMO_TIME_SCALE,
    DEMO_TUNE_FOLDER,
    demo_options,
    demo_tune_options,
)
from servetune.deploy.hpa import HpaTimings
from servetune.deploy.spec import load_deployment_spec
from servetune.load.profile import load_profile
from servetune.run import shows_scaling
from servetune.tune.pipeline import tune

BUDGET_S = 300
START_AND_ANALYSIS_S = 40  # warm-up, replicas ready, tear-down, report: about 10 s measured on 2 cores
TUNE_S = 40  # the short tune after the run: 12 s for 320 candidates measured on 2 cores, busy with a test run
RECORDED_RUN = Path(__file__).parent / "data" / "recorded-hpa50"


def test_the_demo_fits_five_minutes_with_room_to_start_and_analyse():
    profile = load_profile(DEMO_PROFILE, DEMO_TIME_SCALE)
    assert profile.total_seconds() + START_AND_ANALYSIS_S + TUNE_S <= BUDGET_S


def test_the_replicas_come_back_down_well_before_the_end():
    spec = load_deployment_spec(DEMO_SPEC)
    profile = load_profile(DEMO_PROFILE, DEMO_TIME_SCALE)
    timings = HpaTimings(time_scale=DEMO_TIME_SCALE)
    assert spec.autoscaling is not None and spec.autoscaling.max_replicas > spec.autoscaling.min_replicas
    high = max(range(len(profile.phases)), key=lambda i: profile.phases[i].users / max(profile.phases[i].delay, 0.1))
    high_ends = sum(p.duration_s * p.repeats for p in profile.phases[: high + 1])
    window = timings.seconds(spec.autoscaling.behavior.scale_down.stabilization_window_seconds)
    scale_down_at = high_ends + window + 2 * timings.sync_period
    # At least a quarter of the profile is left to show the lower replica count.
    assert scale_down_at <= 0.75 * profile.total_seconds()


def test_demo_options_are_the_local_backend_with_the_default_model():
    options = demo_options(Path("runs/x"))
    assert (options.backend, options.spec, options.profile) == ("local", "demo", "quick")
    assert load_deployment_spec(options.spec).model == "default"


def test_the_terminal_shows_scaling_decisions_not_every_sync():
    assert shows_scaling("05:53:23 replicas 1 (ready 1, pending 0) cpu 0.25 cores -> scale to 2 (DesiredWithinRange)")
    assert not shows_scaling("05:53:30 replicas 2 (ready 2, pending 0) cpu 0.30 cores, 60% of request (target 70%)")
    assert shows_scaling("replica 4242 exited unasked: restart #1")


def test_the_short_tune_is_calibrated_on_the_demo_run_and_bounded_by_the_demo_spec(tmp_path):
    run_dir = tmp_path / "demo-run"
    shutil.copytree(RECORDED_RUN, run_dir)
    options = demo_tune_options(run_dir, budget=24)
    assert options.out == run_dir / DEMO_TUNE_FOLDER
    assert (options.profile, options.verify, options.budget) == (DEMO_PROFILE, 0, 24)
    assert options.better_than == [DEMO_SPEC]
    # the demo spec's own limits (CPU 4 x its request) are allowed: "better than what you ran" keeps what you ran
    assert options.constraints.max_limit_ratio == 4.0
    # the calibration is the run's own: its CPU per request, not the packaged calibration's
    calibration = json.loads(options.calibrations[0].read_text())
    assert calibration["source"] == f"run folder {run_dir}"
    result = tune(replace(options, population=8))
    assert (options.out / "recommended.yaml").is_file() and (options.out / "report.html").is_file()
    assert list(result.baselines) == [DEMO_SPEC]
    demo, recommended = result.baselines[DEMO_SPEC], result.recommended.statistics
    assert recommended.response_time_s <= demo.response_time_s
    assert recommended.memory_requested_KB <= demo.memory_requested_KB
    assert recommended.cpu_requested_core <= demo.cpu_requested_core
    [seeded] = [e for e in result.evaluations if e.seeded_from]
    assert (seeded.seeded_from, seeded.generation) == (DEMO_SPEC, 0)
    assert seeded.candidate.label() == "0.25cpu/1 192Mi/384Mi w1 hpa1-3@70% down120s"
