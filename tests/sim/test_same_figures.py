"""The simulator gives exactly the figures it gave when tests/data/simulated_figures.json was written.

A guard for work on the simulator's speed: a change meant to make it faster must not change a single
simulated request. Each case is simulated with its requests recorded and compared with the stored
statistics (every field, exactly) and a digest of every request, monitor sample and event. When the model
is changed on purpose, write the file again and say why in the commit:

    PYTHONPATH=src python tests/sim/test_same_figures.py --write
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from servetune.deploy.capacity import Capacity
from servetune.deploy.spec import load_deployment_spec
from servetune.load.profile import load_profile
from servetune.sim.simulate import MetricsTiming, Simulation, simulate
from servetune.tune.calibration import load_calibration

DATA = Path(__file__).parents[1] / "data"
FIGURES = DATA / "simulated_figures.json"
CALIBRATION = DATA / "simulated_figures_calibration.json"  # the packaged calibration when the file was written
SPECS = Path(__file__).parents[2] / "benchmarks" / "specs"

# (spec, profile, time scale, local semantics): bundled specs and the fidelity specs with tight CPU limits,
# both semantics on the compressed quick profile, two on the full reference profile
CASES = [
    *((spec, "quick", 0.5, local) for local in (False, True) for spec in (
        "default", "demo", "fixed-1", "course-hpa", "f03-fixed3-c01-l02", "f05-hpa50-c05-l1-w2",
        "f07-hpa90-c02-l02", "f09-hpa60-c02-l04")),
    ("default", "reference", 1.0, True),
    ("f09-hpa60-c02-l04", "reference", 1.0, False),
]
CAPACITY = Capacity(cpu_cores=2.0, memory_bytes=4 * 2**30)


def case_name(case: tuple) -> str:
    spec, profile, time_scale, local = case
    return f"{spec}-{profile}-{time_scale:g}-{'local' if local else 'kubernetes'}"


def simulated(case: tuple) -> Simulation:
    spec, profile, time_scale, local = case
    path = SPECS / f"{spec}.yaml"
    options = {"capacity": CAPACITY, "metrics": MetricsTiming(backend="local"), "node_cpu": 2.0} if local else {}
    return simulate(load_deployment_spec(path if path.is_file() else spec), load_profile(profile, time_scale),
                    load_calibration(CALIBRATION), seed=3, record=True, **options)


def figures(simulation: Simulation) -> dict:
    """The statistics, and a digest of every request, monitor sample and event (repr: every float's digits)."""
    everything = repr(([r.model_dump() for r in simulation.requests or []],
                       [s.model_dump() for s in simulation.resources], simulation.events))
    return {"statistics": simulation.statistics.model_dump(mode="json"),
            "digest": hashlib.sha256(everything.encode()).hexdigest()}


@pytest.mark.parametrize("case", CASES, ids=case_name)
def test_the_simulator_gives_the_stored_figures(case: tuple) -> None:
    stored = json.loads(FIGURES.read_text())[case_name(case)]
    now = figures(simulated(case))
    assert now["statistics"] == stored["statistics"]
    assert now["digest"] == stored["digest"], "a request, monitor sample or event differs"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/sim/test_same_figures.py --write")
    FIGURES.write_text(json.dumps({case_name(c): figures(simulated(c)) for c in CASES}, indent=1) + "\n")
    print(f"wrote {FIGURES}")
