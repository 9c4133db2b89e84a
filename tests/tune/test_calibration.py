from __future__ import annotations

import json

import pytest

from servetune.model.artifact import default_model_path, file_sha256
from servetune.tune.calibration import (
    CalibrationError,
    default_calibration,
    load_calibration,
    save_calibration,
)
from tune.calibrations import constant_calibration


def test_the_packaged_calibration_is_the_default_models_and_says_where_it_was_measured() -> None:
    calibration = default_calibration()
    assert calibration.model == "food11-lite0-112-int8"
    # measured with the file that ships: a new default model needs a new calibration
    assert calibration.model_sha256 == file_sha256(default_model_path())
    assert calibration.accuracy["evaluation"] > 0.5
    assert calibration.machine and calibration.date and calibration.version
    assert {s.cpu_limit for s in calibration.service} == {0.25, 0.5, 1.0, 2.0}
    assert set(calibration.cpu_ms_quantiles) == {"GET /test", "POST /predict"}
    assert 1 < sum(calibration.cpu_ms_quantiles["GET /test"]) / 21 < 100  # ms of CPU per request
    assert 20 * 2**20 < calibration.rss_loaded_bytes <= calibration.rss_peak_bytes < 1024 * 2**20


def test_save_and_load_a_folder_or_a_file(tmp_path) -> None:
    calibration = constant_calibration(7.0)
    path = save_calibration(calibration, tmp_path / "hand")
    assert path == tmp_path / "hand" / "calibration.json"
    assert load_calibration(tmp_path / "hand") == calibration
    assert load_calibration(path) == calibration


def test_bad_calibration_files_name_the_file_and_the_problem(tmp_path) -> None:
    with pytest.raises(CalibrationError, match="no such calibration file"):
        load_calibration(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CalibrationError, match="broken.json: not a calibration"):
        load_calibration(broken)
    data = json.loads(constant_calibration(7.0).model_dump_json())
    data["overhead_ms"] = -1
    negative = tmp_path / "negative.json"
    negative.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="negative.json: not a calibration: overhead_ms"):
        load_calibration(negative)
    data["overhead_ms"] = 1
    data["colour"] = "blue"
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="colour"):
        load_calibration(extra)
