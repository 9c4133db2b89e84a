"""Load profiles as data: the packaged reference and quick profiles, user files, time compression, errors."""

from __future__ import annotations

import pytest

from servetune.config import LoadPhase, LoadProfile
from servetune.load.profile import LoadProfileError, load_profile


def test_reference_profile_is_the_30_runs_of_the_reference_script():
    profile = load_profile("reference")
    runs = [(phase.users, phase.delay, phase.duration_s, phase.target) for _, phase in profile.runs()]
    expected_delays = [100] * 5 + [50] * 2 + [10] * 2 + [3] + [1] * 5 + [1] * 5 + [3] + [60] * 2 + [80] * 7
    expected_users = [20] * 15 + [30] * 5 + [20] * 10
    assert runs == [(u, d, 60.0, "GET /test") for u, d in zip(expected_users, expected_delays)]
    assert profile.total_seconds() == 30 * 60


def offered_rate(phase) -> float:
    return phase.users / (phase.delay / 2)  # requests/s the users offer when answers are instant


def test_quick_profile_is_a_few_minutes_low_high_low():
    profile = load_profile("quick")
    assert 120 <= profile.total_seconds() <= 600
    rates = [offered_rate(phase) for phase in profile.phases]
    peak = rates.index(max(rates))
    assert 0 < peak < len(rates) - 1
    assert rates[0] * 10 <= rates[peak] and rates[-1] * 10 <= rates[peak]
    # low load after the peak outlasts the HPA's default 5-minute scale-down stabilization window
    after = sum(p.duration_s * p.repeats for p in profile.phases[peak + 1 :])
    assert after > 300


def test_time_scale_shortens_runs_without_changing_the_load():
    full = load_profile("reference")
    short = load_profile("reference", time_scale=0.05)
    assert short.total_seconds() == pytest.approx(full.total_seconds() * 0.05)
    assert short.time_scale == 0.05
    for a, b in zip(full.phases, short.phases):
        assert (a.users, a.delay, a.repeats, a.target) == (b.users, b.delay, b.repeats, b.target)
        assert b.duration_s == pytest.approx(a.duration_s * 0.05)


def test_user_profile_file_with_predict_target_resolves_image_folder(tmp_path):
    (tmp_path / "images").mkdir()
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\nimages: images\nphases:\n"
        "  - {users: 5, delay: 2, duration_s: 30, repeats: 2, target: POST /predict}\n"
        "  - {users: 1, delay: 0, rate: 40}\n"
    )
    profile = load_profile(str(path))
    assert profile.images == str((tmp_path / "images").resolve())
    assert len(profile.runs()) == 3
    assert profile.phases[1].open_loop_rate() == 40
    assert profile.phases[0].open_loop_rate() == 5.0


def test_the_open_loop_check_names_the_first_phase_without_an_arrival_rate():
    thinking, rated, no_rate = LoadPhase(users=5, delay=2), LoadPhase(users=1, delay=0, rate=40), LoadPhase(users=1, delay=0)
    assert LoadProfile(name="p", phases=[thinking, rated]).open_loop_problem() is None
    problem = LoadProfile(name="p", phases=[thinking, rated, no_rate, no_rate]).open_loop_problem()
    assert problem == "phase 3: open-loop mode needs `rate` when delay is 0"
    with pytest.raises(ValueError, match="open-loop mode needs `rate` when delay is 0"):
        no_rate.open_loop_rate()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: x\nphases: [ {users: 3\n", "line 3: not valid YAML"),
        ("- just\n- a list\n", "a profile is a YAML mapping"),
        ("name: x\nphases:\n  - {users: 2}\nname: y\n", "line 4: not valid YAML: duplicate key 'name' (first given on line 1)"),
        ("name: x\nphases:\n  - users: 2\n    delay: 1\n    users: 20\n", "line 5: not valid YAML: duplicate key 'users' (first given on line 3)"),
        ("name: x\nphases: []\n", "phases: List should have at least 1 item"),
        ("name: x\nphases:\n  - {users: 0}\n", "phases[0].users: Input should be greater than or equal to 1"),
        ("name: x\nphases:\n  - {users: 2, target: GET /other}\n", "phases[0].target: Input should be"),
        ("name: x\nphases:\n  - {users: 2, think: 3}\n", "phases[0].think: Extra inputs are not permitted"),
        ("name: x\nphases:\n  - {users: 2, delay: -1}\n", "phases[0].delay: Input should be greater than"),
    ],
)
def test_bad_profile_file_names_the_file_and_problem(tmp_path, text, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(LoadProfileError) as error:
        load_profile(str(path))
    assert str(error.value).startswith(f"{path}: ")
    assert problem in str(error.value)


def test_missing_profile_lists_the_packaged_ones(tmp_path):
    with pytest.raises(LoadProfileError, match="no such profile file .packaged profiles: reference, quick"):
        load_profile(str(tmp_path / "absent.yaml"))


def test_time_scale_must_be_positive():
    with pytest.raises(LoadProfileError, match="time scale must be a number > 0"):
        load_profile("quick", time_scale=0)
