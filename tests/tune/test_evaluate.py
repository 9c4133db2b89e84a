import pytest

from servetune.deploy.spec import load_deployment_spec
from servetune.load.profile import load_profile
from servetune.model.artifact import default_model_path
from servetune.tune.calibration import CalibrationError, default_calibration, save_calibration
from servetune.tune.evaluate import CandidateSimulator, calibrations_for, memory_free, with_memory
from servetune.tune.space import Candidate


def candidate(memory_mb: int, limit_mb: int) -> Candidate:
    return Candidate("default", 0.25, 0.5, memory_mb, limit_mb, 1, None, None, 1, 3, 60, 60, "kubernetes")


def test_memory_twins_derived_from_one_simulation_equal_their_own_simulation():
    simulator = CandidateSimulator(load_profile("quick"), {"default": default_calibration()},
                                   load_deployment_spec("default"))
    small, large = candidate(256, 512), candidate(320, 384)
    assert memory_free(small) == memory_free(large)
    direct = simulator(large)
    derived = with_memory(simulator(small), small, large)
    assert derived.memory_requested_KB == pytest.approx(direct.memory_requested_KB, rel=1e-9)
    assert derived.memory_limit_KB == pytest.approx(direct.memory_limit_KB, rel=1e-9)
    same = {"memory_requested_KB", "memory_limit_KB"}
    assert derived.model_dump(exclude=same) == direct.model_dump(exclude=same)


def test_each_model_needs_its_calibration(tmp_path):
    packaged = calibrations_for(["default"], [])
    assert packaged["default"].model == default_calibration().model
    other = tmp_path / "variant.onnx"
    other.write_bytes(default_model_path().read_bytes() + b"\0")  # another file: another hash
    with pytest.raises(CalibrationError, match=r"variant.onnx: no calibration for this model; measure one"):
        calibrations_for([str(other)], [])
    matching = default_calibration().model_copy(update={"model_sha256": "", "model_file": "variant.onnx"})
    path = save_calibration(matching, tmp_path / "variant-calibration.json")
    assert calibrations_for([str(other)], [path])[str(other)].model_file == "variant.onnx"
    with pytest.raises(CalibrationError, match="no such model file"):
        calibrations_for([str(tmp_path / "gone.onnx")], [])
