import signal
import subprocess
import sys

import pytest

from servetune.deploy.spec import load_deployment_spec
from servetune.load.profile import load_profile
from servetune.model.artifact import default_model_path, file_sha256
from servetune.stop_signals import sigterm_as_interrupt
from servetune.tune.calibration import CalibrationError, default_calibration, save_calibration
from servetune.tune.evaluate import (
    CandidateSimulator,
    calibrations_for,
    memory_free,
    process_pool,
    with_memory,
)
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
    assert packaged.calibrations["default"].model == default_calibration().model
    digest = file_sha256(default_model_path())[:12]
    used = (f"model default (food11-lite0-int8.onnx, sha256 {digest}): the packaged calibration "
            f"({default_calibration().model}, measured {default_calibration().date[:10]})")
    assert packaged.used == [used]
    assert packaged.warnings == []  # no file given: the packaged calibration is what the user asked for
    other = tmp_path / "variant.onnx"
    other.write_bytes(default_model_path().read_bytes() + b"\0")  # another file: another hash
    with pytest.raises(CalibrationError, match=r"variant.onnx: no calibration for this model \(sha256 \w{12}\); "
                       "measure one"):
        calibrations_for([str(other)], [])
    matching = default_calibration().model_copy(update={"model_sha256": "", "model_file": "variant.onnx"})
    path = save_calibration(matching, tmp_path / "variant-calibration.json")
    found = calibrations_for([str(other), "default"], [path])
    assert found.calibrations[str(other)].model_file == "variant.onnx"
    assert found.used[0].startswith(f"model {other} (sha256 ") and f"): {path} (" in found.used[0]
    warning = (f"no --calibration file matches model default (food11-lite0-int8.onnx, sha256 {digest}): it is "
               f"simulated with the packaged calibration; the files given are of: {path}: food11-lite0-112-int8 "
               "(variant.onnx, sha256 not recorded)")
    assert found.warnings == [warning]
    with pytest.raises(CalibrationError, match="no such model file"):
        calibrations_for([str(tmp_path / "gone.onnx")], [])


def test_a_copy_of_the_packaged_model_has_the_packaged_calibration_and_a_given_file_wins(tmp_path):
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(default_model_path().read_bytes())
    assert calibrations_for([str(copy)], []).calibrations[str(copy)] == default_calibration()
    measured = save_calibration(default_calibration().model_copy(update={"model": "measured here"}), tmp_path)
    found = calibrations_for([str(copy), "default"], [measured])
    assert {c.model for c in found.calibrations.values()} == {"measured here"}
    assert found.warnings == []


def worker_signals(_: int) -> tuple[bool, bool]:
    return signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_pool_workers_leave_ctrl_c_to_the_parent_and_end_quietly():
    previous = signal.getsignal(signal.SIGTERM)
    sigterm_as_interrupt()  # as the CLI installs it; the forked workers inherit it
    try:
        with process_pool(2) as mapper:
            assert mapper(worker_signals, range(4)) == [(True, True)] * 4
    finally:
        signal.signal(signal.SIGTERM, previous)
    # The pool's end terminates its workers: nothing of it reaches the terminal.
    script = ("from servetune.stop_signals import sigterm_as_interrupt\n"
              "from servetune.tune.evaluate import process_pool\n"
              "sigterm_as_interrupt()\n"
              "for _ in range(5):\n"
              "    with process_pool(2) as mapper:\n"
              "        mapper(abs, range(-50, 50))\n")
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


def test_a_pool_ended_while_its_workers_start_ends_them_quietly():
    # SIGTERM reaching a worker before its initializer has replaced the parent's handlers: held until then,
    # it ends the worker at once instead of raising KeyboardInterrupt into the copy of the parent's stack.
    script = ("import time\n"
              "import servetune.tune.evaluate as evaluate\n"
              "from servetune.stop_signals import leave_signals_to_the_parent, sigterm_as_interrupt\n"
              "def slow_start():\n"
              "    time.sleep(0.5)\n"
              "    leave_signals_to_the_parent()\n"
              "evaluate.leave_signals_to_the_parent = slow_start\n"
              "sigterm_as_interrupt()\n"
              "with evaluate.process_pool(2):\n"
              "    pass\n"
              "print('ended')\n")
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "ended\n", result.stderr
    assert "Traceback" not in result.stderr and "KeyboardInterrupt" not in result.stderr, result.stderr
