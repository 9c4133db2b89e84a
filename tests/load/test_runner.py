"""Choosing a load driver: what each one cannot do is refused before anything starts."""

from __future__ import annotations

import pytest

from servetune.load.driver import LoadOptions
from servetune.load.profile import load_profile
from servetune.load.runner import LoadDriver, aim_at, check_driver, run_with_driver
from servetune.load.target import TargetError


def test_siege_has_closed_loop_users_only(tmp_path):
    with pytest.raises(TargetError, match="--mode open needs --driver builtin"):
        run_with_driver(LoadDriver.SIEGE, load_profile("quick", 0.01), "http://127.0.0.1:9", tmp_path,
                 LoadOptions(mode="open"))
    assert not (tmp_path / "load_output.csv").exists()
    check_driver(LoadDriver.BUILTIN, LoadOptions(mode="open"))


def test_an_image_folder_must_exist(tmp_path):
    with pytest.raises(TargetError, match="no/such: no such image folder"):
        check_driver(LoadDriver.BUILTIN, LoadOptions(images=tmp_path / "no" / "such"))


def test_aim_at_sends_every_phase_to_one_endpoint():
    profile = aim_at(load_profile("quick"), "predict")
    assert {phase.target for phase in profile.phases} == {"POST /predict"}
    assert load_profile("quick").phases[0].target == "GET /test"  # the original is untouched
