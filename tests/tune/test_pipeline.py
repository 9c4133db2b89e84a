"""`servetune tune` as a user runs it: a real process on the real simulator, exit codes and messages."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from command import servetune
from food11_folders import write_split
from servetune.analyze.stats import summarize
from servetune.cli import app
from servetune.deploy.spec import load_deployment_spec
from servetune.model.artifact import default_model_path, file_sha256, record_accuracy
from servetune.tune.calibration import default_calibration, save_calibration
from servetune.tune.calibration_check import check_run
from servetune.tune.constraints import Constraints
from servetune.tune.search import baseline_seeds
from servetune.tune.space import SearchSpace
from servetune.tune.tune_folder import baseline_labels

SMALL_SPACE = {
    "cpu_request": [0.1, 0.25, 0.5],
    "cpu_limit_ratio": [1.0, 2.0],
    "memory_request_mb": [64, 128, 256],
    "memory_limit_ratio": [1.0, 2.0],
    "replicas": [1, 2],
    "autoscaling": {"min_replicas": [1], "max_replicas": [2, 3], "target_cpu_utilization": [50, 80]},
}
RECORDED_CALIBRATION = Path(__file__).parents[1] / "data" / "recorded-hpa50" / "calibration.json"  # an earlier model


def in_process(*args: str):
    """Bad input is refused before anything runs: in-process is enough (and quick)."""
    return CliRunner().invoke(app, list(args))


def space_file(tmp_path, data) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_small_tune_writes_the_front_the_recommended_spec_and_the_report(tmp_path):
    out = tmp_path / "tune"
    result = servetune("tune", "--profile", "quick", "--out", str(out), "--space", space_file(tmp_path, SMALL_SPACE),
                       "--budget", "40", "--population", "12", "--verify", "0", "--jobs", "2",
                       "--baseline", "course-hpa", "--no-slower-than", "fixed-1")
    assert result.returncode == 0, result.stderr
    assert "recommended:" in result.stdout and "report:" in result.stdout
    bound = float(result.stdout.split("response time bound: ")[1].split(" ms")[0])
    rows = list(csv.DictReader((out / "candidates.csv").open()))
    assert 40 <= len(rows) and sum(r["simulated"] == "True" for r in rows) == 40
    assert all(int(r["memory_request_mb"]) >= 128 for r in rows if r["simulated"] == "True")  # 64 MiB < peak RSS
    front = json.loads((out / "frontier.json").read_text())
    assert front["candidates"] and all(c["statistics"]["failure_rate"] == 0 for c in front["candidates"])
    # the printed bound is rounded to 0.1 ms
    assert all(c["statistics"]["response_time_s"] * 1000 <= bound + 0.05 for c in front["candidates"])
    assert "simulated response time of fixed-1" in front["constraints"]["--max-response-ms"]
    assert "least memory requested" in front["rule"]
    recommended = load_deployment_spec(out / "recommended.yaml")
    first = front["candidates"][0]
    assert recommended.requests.memory_mb == first["memory_request_mb"]
    assert recommended.requests.cpu == first["cpu_request"]
    memory = [c["statistics"]["memory_requested_KB"] for c in front["candidates"]]
    assert memory[0] == min(memory)  # the rule: least memory requested first
    assert "kind: Deployment" in (out / "recommended-manifests.yaml").read_text()
    report = (out / "report.html").read_text()
    assert "Pareto" in report and "course-hpa" in report and "fixed-1" in report and "data:image/png;base64" in report
    for name in ("recommended", "fixed-1", "course-hpa"):
        assert (out / "simulated" / name / "resource_usage.csv").is_file()
    again = servetune("tune", "--out", str(out), "--budget", "5", "--verify", "0")
    assert again.returncode == 2 and "already holds a tune" in again.stderr


def test_baselines_given_as_paths_are_labelled_and_get_folders_by_their_stems_inside_the_tune_folder(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    fixed = load_deployment_spec("fixed-1")
    mine, other = tmp_path / "mine.yaml", tmp_path / "x.yaml"
    for path in (mine, other):
        path.write_text(f"replicas: 1\nrequests: {{cpu: {fixed.requests.cpu}, memory_mb: {fixed.requests.memory_mb}}}\n")
    before = mine.read_text()
    result = servetune("tune", "--profile", "quick", "--out", "tune", "--space", space_file(tmp_path, SMALL_SPACE),
                       "--budget", "6", "--population", "6", "--verify", "0", "--jobs", "1",
                       "--better-than", str(mine), "--baseline", "../x.yaml", cwd=str(work))
    assert result.returncode == 0, result.stderr
    assert mine.read_text() == before and other.is_file()  # the user's files are left alone
    assert sorted(p.name for p in (work / "tune" / "simulated").iterdir()) == ["mine", "recommended", "x"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.yaml", "space.yaml", "work", "x.yaml"]
    assert (work / "tune" / "report.html").is_file()
    # shown by their labels, not their paths: in the table and the bound lines
    assert str(mine) not in result.stdout and "../x.yaml" not in result.stdout
    assert "│ mine " in result.stdout and "│ x " in result.stdout
    assert "CPU requested bound: 1.000 CPU (the simulated CPU requested of mine, --better-than)" in result.stdout


def test_with_no_response_bound_the_knee_is_recommended_within_twice_the_fastest_baseline(tmp_path):
    out = tmp_path / "tune"
    space = {**SMALL_SPACE, "cpu_request": [0.05, 0.1, 0.25, 0.5], "autoscaling": {
        "min_replicas": [1, 2], "max_replicas": [1, 2, 3], "target_cpu_utilization": [50, 80]}}
    result = servetune("tune", "--profile", "quick", "--out", str(out), "--space", space_file(tmp_path, space),
                       "--budget", "30", "--population", "10", "--verify", "0", "--jobs", "1")
    assert result.returncode == 0, result.stderr
    cap = "(2 x the simulated response time of default, the fastest baseline: no response bound was given)"
    assert "response time bound: " in result.stdout and cap in result.stdout
    front = json.loads((out / "frontier.json").read_text())
    assert front["rule"].startswith("no bound on the response time: the knee of the front")
    bound = float(front["constraints"]["--max-response-ms"].split(" ms")[0])
    default = summarize(out / "simulated" / "default")
    assert bound == pytest.approx(2 * default.response_time_s * 1000, abs=0.05)  # rounded to 0.1 ms
    first = front["candidates"][0]["statistics"]
    assert first["response_time_s"] * 1000 <= bound + 0.05
    products = [c["statistics"]["memory_requested_KB"] * c["statistics"]["cpu_requested_core"]
                * c["statistics"]["response_time_s"] for c in front["candidates"]]
    assert products[0] == min(products)
    labels = [r["label"] for r in csv.DictReader((out / "candidates.csv").open())]
    assert not any("hpa1-1@" in label or "hpa2-2@" in label or "hpa2-1@" in label for label in labels)


def test_the_closing_lines_say_the_pick_is_unverified_name_the_manifests_and_a_baseline_of_another_model(
        tmp_path):
    variant = model_copy(tmp_path, "variant.onnx")
    record_accuracy(variant, "evaluation", 0.5)  # another model file (another sha256), calibrated below
    calibration = default_calibration().model_copy(update={
        "model": "variant", "model_file": variant.name, "model_sha256": file_sha256(variant)})
    calibration_file = save_calibration(calibration, tmp_path / "variant-calibration" / "calibration.json")
    out = tmp_path / "tune"
    space = space_file(tmp_path, {**SMALL_SPACE, "models": [str(variant)]})
    result = servetune("tune", "--profile", "quick", "--out", str(out), "--space", space, "--budget", "6",
                       "--population", "6", "--verify", "0", "--jobs", "1", "--calibration", str(calibration_file))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    packaged = default_calibration().model
    assert any(line.startswith(f"│ default (model {packaged})") for line in lines), result.stdout
    note = (f"note: baseline default serves another model ({packaged}) than the recommended one: its figures "
            "compare another model as well as another deployment")
    assert note in lines
    assert "  NOT verified (--verify 0, or stopped before): every figure above is simulated" in lines
    manifests = out / "recommended-manifests.yaml"
    assert f"  manifests: {manifests} (kubectl apply -f {manifests})" in lines
    assert f"  spec: {out / 'recommended.yaml'} (servetune run -c / servetune deploy apply)" in lines
    assert "another model" in (out / "report.html").read_text()
    assert "RuntimeWarning" not in result.stderr


def test_baseline_labels_are_sanitised_stems_never_paths():
    names = baseline_labels(["/home/me/mine.yaml", "../mine.yml", "course-hpa", "..", "a b/c:d.yaml", "rec.yaml"],
                         reserved=["rec"])
    assert names == {"/home/me/mine.yaml": "mine", "../mine.yml": "mine-2", "course-hpa": "course-hpa",
                     "..": "spec", "a b/c:d.yaml": "c-d", "rec.yaml": "rec-2"}


def test_an_unknown_space_field_is_named(tmp_path):
    space = space_file(tmp_path, {**SMALL_SPACE, "gpu": [1]})
    result = in_process("tune", "--out", str(tmp_path / "t"), "--space", space)
    assert result.exit_code == 2
    assert "space.yaml: gpu: unknown field (allowed: base, models, cpu_request" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_infeasible_space_says_why_before_simulating(tmp_path):
    space = space_file(tmp_path, {**SMALL_SPACE, "memory_request_mb": [16, 32]})
    result = in_process("tune", "--out", str(tmp_path / "t"), "--space", space)
    assert result.exit_code == 2
    assert "infeasible search space" in result.stderr and "every memory_request_mb is below" in result.stderr
    assert not (tmp_path / "t").exists()


def test_an_empty_frontier_names_the_constraint_that_excluded_everything(tmp_path):
    out = tmp_path / "t"
    result = servetune("tune", "--profile", "quick", "--out", str(out), "--space", space_file(tmp_path, SMALL_SPACE),
                       "--budget", "12", "--population", "6", "--verify", "0", "--jobs", "1",
                       "--max-response-ms", "0.01")
    assert result.returncode == 1
    assert "no candidate met the constraints: --max-response-ms (0.01 ms) excluded all" in result.stderr
    assert (out / "candidates.csv").is_file()  # what was simulated is kept


def test_better_than_bounds_memory_cpu_and_response_time_by_the_baseline(tmp_path):
    out = tmp_path / "tune"
    result = servetune("tune", "--profile", "quick", "--out", str(out), "--space", space_file(tmp_path, SMALL_SPACE),
                       "--budget", "24", "--population", "12", "--verify", "0", "--jobs", "1",
                       "--better-than", "fixed-1", "--headroom", "0")
    assert result.returncode == 0, result.stderr
    assert "memory requested bound: 512 MiB (the simulated memory requested of fixed-1, --better-than)" in (
        result.stdout)
    assert "CPU requested bound: 1.000 CPU (the simulated CPU requested of fixed-1, --better-than)" in result.stdout
    assert "response time bound: " in result.stdout and "response time of fixed-1, --better-than" in result.stdout
    assert "fixed-1" in result.stdout.split("recommended:")[0]  # a row of the comparison table
    assert "in the verification" not in result.stdout  # nothing was run for real: no second bar to show
    bound = dict(json.loads((out / "frontier.json").read_text())["constraints"])
    response_ms = float(bound["--max-response-ms"].split(" ms")[0])
    front = json.loads((out / "frontier.json").read_text())["candidates"]
    assert front
    for candidate in front:
        s = candidate["statistics"]
        assert s["memory_requested_KB"] <= 512 * 1024 and s["cpu_requested_core"] <= 1.0
        assert s["response_time_s"] * 1000 <= response_ms + 0.05  # the text is rounded to 0.1 ms
    rows = list(csv.DictReader((out / "candidates.csv").open()))
    assert any("memory requested" in r["violations"] and "fixed-1, --better-than" in r["violations"] for r in rows)
    report = (out / "report.html").read_text()
    assert "--max-memory-requested-mib" in report and "memory requested of fixed-1, --better-than" in report
    # the search started from the baselines' nearest candidates (the default --baseline default, then fixed-1:
    # 1 CPU and 512 MiB snapped to the space's largest values)
    assert (out / "candidates.csv").read_text().splitlines()[0].endswith(",seed")  # appended: old readers work
    default, fixed = "0.5cpu/1 256Mi/512Mi w1 hpa1-3@80% down300s", "0.5cpu/0.5 256Mi/256Mi w1 fixed1"
    assert [(r["generation"], r["label"], r["seed"]) for r in rows[:2]] == [("0", default, "default"),
                                                                           ("0", fixed, "fixed-1")]
    assert all(r["seed"] == "" for r in rows[2:])
    assert f"First generation seeded with fixed-1: c0002 {fixed}" in report


def test_a_baseline_outside_the_space_or_beyond_the_limit_ratio_is_noted():
    space = SearchSpace.model_validate({**SMALL_SPACE, "autoscaling": None})
    baselines = {name: load_deployment_spec(name) for name in ("fixed-1", "demo")}
    seeds, notes = baseline_seeds(space, baselines, Constraints())
    assert [name for name, _ in seeds] == ["fixed-1"]
    outside = ("baseline demo does not seed the search: it is autoscaled and the search space holds no "
               "autoscaled candidates")
    beyond = ("baseline demo: its limits are up to 4 x its requests, above --max-limit-ratio 2: candidates like it "
              "are excluded (--max-limit-ratio 4 allows them)")
    assert notes == [outside, beyond]
    assert baseline_seeds(space, baselines, Constraints(max_limit_ratio=4))[1] == [outside]


def model_copy(tmp_path, name: str, extra: bytes = b"") -> Path:
    """The packaged model's file at another path; `extra` bytes make it another model file (another hash)."""
    path = tmp_path / name
    path.write_bytes(default_model_path().read_bytes() + extra)
    return path


def test_calibration_files_that_match_no_model_are_warned_of_and_recorded(tmp_path):
    out = tmp_path / "tune"
    result = servetune("tune", "--profile", "quick", "--out", str(out), "--space", space_file(tmp_path, SMALL_SPACE),
                       "--budget", "6", "--population", "6", "--verify", "0", "--jobs", "1",
                       "--calibration", str(RECORDED_CALIBRATION))
    assert result.returncode == 0, result.stderr
    warning = (f"no --calibration file matches model default (food11-lite0-int8.onnx, sha256 "
               f"{file_sha256(default_model_path())[:12]}): it is simulated with the packaged calibration; the files "
               f"given are of: {RECORDED_CALIBRATION}: food11-lite0-112-int8 (food11-lite0-int8.onnx, sha256 "
               "d61a6f25f65d)")
    assert f"warning: {warning}" in result.stderr
    report = (out / "report.html").read_text()
    assert f"<b>warning:</b> {warning}" in report
    assert "model default (food11-lite0-int8.onnx, sha256 " in report and "): the packaged calibration (" in report


def test_a_model_with_no_calibration_at_all_is_a_clear_error(tmp_path):
    variant = model_copy(tmp_path, "variant.onnx", b"\0")
    space = space_file(tmp_path, {**SMALL_SPACE, "models": [str(variant)]})
    result = servetune("tune", "--profile", "quick", "--out", str(tmp_path / "t"), "--space", space,
                       "--calibration", str(RECORDED_CALIBRATION))
    assert result.returncode == 2
    assert (f"error: {variant}: no calibration for this model (sha256 {file_sha256(variant)[:12]}); the "
            f"--calibration files given are of: {RECORDED_CALIBRATION}: food11-lite0-112-int8") in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "t").exists()


def test_a_baseline_of_a_model_outside_the_space_bounds_the_search_but_does_not_seed_it(tmp_path):
    out = tmp_path / "tune"
    space = space_file(tmp_path, {**SMALL_SPACE, "models": [str(model_copy(tmp_path, "copy.onnx"))]})
    result = servetune("tune", "--profile", "quick", "--out", str(out), "--space", space, "--budget", "12",
                       "--population", "6", "--verify", "0", "--jobs", "1", "--better-than", "fixed-1")
    assert result.returncode == 0, result.stderr
    assert "memory requested bound: 512 MiB (the simulated memory requested of fixed-1, --better-than)" in (
        result.stdout)
    note = ("baseline fixed-1 does not seed the search: its model default is not among the search space's "
            "models")
    assert note in " ".join(result.stderr.split())  # the console wraps long lines
    assert note in (out / "report.html").read_text().replace("&#x27;", "'")
    rows = list(csv.DictReader((out / "candidates.csv").open()))
    assert rows and all(r["seed"] == "" and r["label"].startswith("copy ") for r in rows)
    assert (out / "simulated" / "fixed-1" / "resource_usage.csv").is_file()


def test_a_baseline_of_a_model_with_no_calibration_is_a_clear_error(tmp_path):
    variant = model_copy(tmp_path, "variant.onnx", b"\0")
    spec = tmp_path / "variant.yaml"
    spec.write_text(f"model: {variant}\nreplicas: 1\nrequests: {{cpu: 0.5, memory_mb: 256}}\n")
    result = servetune("tune", "--profile", "quick", "--out", str(tmp_path / "t"), "--no-slower-than", str(spec))
    assert result.returncode == 2
    assert f"error: baseline {spec}: {variant}: no calibration for this model" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "t").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["--capacity", "cpu=two"], "--capacity: capacity 'cpu=two'"),
    (["--backend", "docker"], "--backend must be local or kubernetes"),
    (["--profile", "nope"], "no such profile file"),
    (["--calibration", "missing.json"], "missing.json: no such calibration file"),
    (["--better-than", "nosuch"], "no such spec file"),
    (["--no-slower-than", "nosuch"], "no such spec file"),
    (["--max-cpu-requested", "0"], "--max-cpu-requested"),
    (["--headroom", "0.9"], "--headroom"),
    (["--verify-repeats", "0"], "--verify-repeats"),
    (["--labelling-users", "2"], "--labelling-users needs --labelling-photos"),
    (["--labelling-photos", "photos"], "--labelling-photos needs --labelling-users"),
    (["--holdout-fraction", "1.5"], "--holdout-fraction"),
])
def test_bad_flags_are_refused_with_the_reason(tmp_path, args, expected):
    result = in_process("tune", "--out", str(tmp_path / "t"), *args)
    assert result.exit_code == 2 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_out_is_required():
    result = in_process("tune")
    assert result.exit_code == 2 and "--out is required" in result.stderr


@pytest.mark.slow
def test_verification_runs_the_best_candidate_for_real_and_shows_both_side_by_side(tmp_path):
    out = tmp_path / "tune"
    result = servetune("tune", "--profile", "quick", "--out", str(out), "--space", space_file(tmp_path, SMALL_SPACE),
                       "--budget", "12", "--population", "6", "--verify", "1", "--time-scale", "0.05",
                       "--jobs", "1", timeout=600)
    assert result.returncode == 0, result.stderr
    front = json.loads((out / "frontier.json").read_text())["candidates"]
    first = front[0]["id"]
    run = json.loads((out / "verify" / first / "run.json").read_text())
    assert run["status"] == "completed" and run["time_scale"] == 0.05
    assert run["spec"] == str(out / "specs" / f"{first}.yaml")  # the spec file the tune wrote, for the user
    assert (out / "specs" / f"{first}.yaml").is_file()
    assert load_deployment_spec(out / "specs" / f"{first}.yaml") == load_deployment_spec(out / "recommended.yaml")
    measured = json.loads((out / "verify" / first / "summary.json").read_text())
    report = (out / "report.html").read_text()
    assert "simulated (at the run's time scale) against measured" in report
    assert f"{measured['memory_requested_KB'] / 1024:,.0f}" in report  # the measured figure is in the table
    verdict = "verified" if measured["failure_rate"] == 0 else "failed verification"
    assert f"verify {first}" in result.stdout and verdict in result.stdout
    header = (out / "recommended.yaml").read_text().splitlines()[1]
    assert header.startswith("# verified by a real run" if verdict == "verified" else "# the rule's first pick")
    # the real run checked against the calibration the search used: a warning exactly when 15 % apart
    check = check_run(out / "verify" / first, default_calibration())
    assert check is not None and check.run_ms > 0
    warned = f"recalibrate from the run: servetune tune calibrate --from-run {out / 'verify' / first}"
    assert (warned in " ".join(result.stderr.split())) is check.disagrees, (check, result.stderr)


@pytest.mark.slow
def test_verify_repeats_runs_the_candidate_into_numbered_folders_and_reports_the_mean_with_its_range(tmp_path):
    out = tmp_path / "tune"
    result = servetune("tune", "--profile", "quick", "--out", str(out), "--space", space_file(tmp_path, SMALL_SPACE),
                       "--budget", "12", "--population", "6", "--verify", "1", "--verify-repeats", "2",
                       "--time-scale", "0.05", "--jobs", "1", timeout=600)
    assert result.returncode == 0, result.stderr
    first = json.loads((out / "frontier.json").read_text())["candidates"][0]["id"]
    assert not (out / "verify" / first).exists()
    summaries = []
    for repeat in ("r1", "r2"):
        run = json.loads((out / "verify" / f"{first}-{repeat}" / "run.json").read_text())
        assert run["status"] == "completed" and run["time_scale"] == 0.05
        summaries.append(json.loads((out / "verify" / f"{first}-{repeat}" / "summary.json").read_text()))
    assert "time scale 0.05, 2 runs)" in " ".join(result.stderr.split())  # the console wraps lines
    report = (out / "report.html").read_text()
    assert "measured: mean (min-max) of 2 runs" in report and f"{first}-r2/report.html" in report
    rates = [s["transaction_rate"] for s in summaries]
    assert f"{sum(rates) / 2:.2f} ({min(rates):.2f}-{max(rates):.2f})" in report  # the mean with its range
    cpu = [s["cpu_requested_core"] for s in summaries]
    verdict = "verified" if all(s["failure_rate"] == 0 for s in summaries) else "failed verification"
    assert (f"verify {first}" in result.stdout and verdict in result.stdout
            and "(mean (min-max) of 2 runs) " in result.stdout
            and f"{sum(cpu) / 2:.3f} ({min(cpu):.3f}-{max(cpu):.3f}) CPU" in result.stdout), result.stdout


def test_a_calibration_measured_on_another_backend_is_warned_of(tmp_path):
    out = tmp_path / "tune"
    result = servetune("tune", "--profile", "quick", "--out", str(out), "--space", space_file(tmp_path, SMALL_SPACE),
                       "--budget", "6", "--population", "6", "--verify", "0", "--jobs", "1", "--backend", "kubernetes")
    assert result.returncode == 0, result.stderr
    warning = ("model default: its calibration was measured on the local backend and the tune simulates --backend "
               "kubernetes")
    assert warning in " ".join(result.stderr.split())  # the console wraps long lines
    assert warning in (out / "report.html").read_text()
    same = servetune("tune", "--profile", "quick", "--out", str(tmp_path / "local"), "--space",
                     space_file(tmp_path, SMALL_SPACE), "--budget", "6", "--population", "6", "--verify", "0",
                     "--jobs", "1")
    assert same.returncode == 0 and "was measured on the" not in same.stderr


def labelling_photos(tmp_path) -> str:
    write_split(tmp_path / "photos", "evaluation", "flat", per_class=1)
    return str(tmp_path / "photos" / "evaluation")


def test_labelling_users_need_held_out_uploads_and_a_verification_before_anything_runs(tmp_path):
    photos = labelling_photos(tmp_path)
    common = ["tune", "--profile", "quick", "--out", str(tmp_path / "t"), "--space",
              space_file(tmp_path, SMALL_SPACE), "--labelling-users", "2", "--labelling-photos", photos]
    no_holdout = in_process(*common, "--verify", "1")  # the bundled base spec holds nothing out
    assert no_holdout.exit_code == 2, no_holdout.output
    assert ("error: --labelling-users: the space's base spec: labelling users need held-out uploads: set "
            "labels.holdout_fraction in the spec, or --holdout-fraction") in " ".join(no_holdout.stderr.split())
    no_runs = in_process(*common, "--verify", "0", "--holdout-fraction", "0.5")
    assert no_runs.exit_code == 2 and "--verify 0 runs none" in " ".join(no_runs.stderr.split())
    assert "Traceback" not in no_holdout.stderr + no_runs.stderr and not (tmp_path / "t").exists()


@pytest.mark.slow
def test_labelling_users_measure_each_verified_candidates_live_accuracy_beside_the_offline_one(tmp_path):
    out = tmp_path / "tune"
    result = servetune("tune", "--profile", "quick", "--out", str(out), "--space", space_file(tmp_path, SMALL_SPACE),
                       "--budget", "12", "--population", "6", "--verify", "1", "--time-scale", "0.05",
                       "--jobs", "1", "--labelling-users", "2", "--labelling-photos", labelling_photos(tmp_path),
                       "--labelling-think", "0.2", "--holdout-fraction", "0.5", timeout=600)
    assert result.returncode == 0, result.stderr
    first = json.loads((out / "frontier.json").read_text())["candidates"][0]
    run = json.loads((out / "verify" / first["id"] / "run.json").read_text())
    live = run["live_accuracy"]
    assert live["n"] > 0 and live["held_out"] >= live["n"]
    low, high = live["wilson_95"]
    text = f"{live['accuracy']:.2%} (95 % Wilson {low:.1%}..{high:.1%}, n={live['n']})"
    offline = f"offline {run['accuracy']:.2%} (the model's, on a fixed data set)"
    # The verification lines (stdout), the report, frontier.csv/json and verification.json carry it, each
    # beside the offline accuracy and saying which is which.
    assert f"  live accuracy {text} from held-out labels during the run; {offline}" in result.stdout.splitlines()
    report = (out / "report.html").read_text()
    assert "Accuracy: offline and live (measured in the verification runs)" in report and text in report
    assert first["live_accuracy"]["n"] == live["n"] and first["live_accuracy"]["wilson_95"] == [low, high]
    assert first["accuracy"] == run["accuracy"]
    [row] = [r for r in csv.DictReader((out / "frontier.csv").open()) if r["id"] == first["id"]]
    assert int(row["live_accuracy_n"]) == live["n"] and float(row["live_accuracy_low"]) == round(low, 6)
    assert all(r["live_accuracy"] == "" for r in csv.DictReader((out / "frontier.csv").open())
               if r["id"] != first["id"])  # not run for real: no live figure
    [verified] = json.loads((out / "verification.json").read_text())
    assert verified["label"].startswith(first["id"]) and verified["runs"] == [str(out / "verify" / first["id"])]
    assert verified["offline_accuracy"] == run["accuracy"] and verified["live_accuracy"]["n"] == live["n"]
    assert "labelling users" in verified["live_accuracy"]["source"]
    assert f"offline; live {text} in its real runs)" in result.stdout
