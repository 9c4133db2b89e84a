"""The simulated backend: the evaluation protocol (run.py) with the measured step computed by the simulator,
so `servetune run --backend simulated` writes the run folder a real run writes, marked simulated."""

from __future__ import annotations

from dataclasses import dataclass

from servetune.backend.protocol import BackendName, Measurement
from servetune.config import DeploymentSpec
from servetune.deploy.capacity import Capacity
from servetune.runfolder import RunRecorder
from servetune.sim.costs import Costs
from servetune.sim.simulate import MetricsTiming, simulate
from servetune.sim.simulation import Simulation, calibration_record


@dataclass
class SimulatedBackend:
    """`calibration`: the model's costs (tune/ reads them); the rest as `sim.simulate.simulate` takes them."""

    spec: DeploymentSpec
    calibration: Costs
    capacity: Capacity | None = None
    metrics: MetricsTiming | None = None
    node_cpu: float | None = None
    others_cores: float = 0.0
    open_loop: bool = False
    seed: int = 0
    record_requests: bool = True
    name: str = BackendName.SIMULATED
    warm_up_description: str = "nothing to warm up: simulated"
    simulation: Simulation | None = None

    def warm_up(self) -> str:
        return "simulated: no cluster"

    def apply(self) -> str:
        return f"simulated {self.spec.name}"

    def wait_ready(self) -> str:
        return f"{self.spec.replicas} replica(s) ready at the load's start (simulated)"

    @property
    def url(self) -> str:
        return "simulated://"

    def limits(self) -> dict:
        costs = self.calibration
        return {"limits_enforced": True, "limits_note": "simulated: CFS quota per 100 ms period",
                "simulated": True, "seed": self.seed, "calibration": calibration_record(costs)}

    def measure(self, measurement: Measurement, recorder: RunRecorder) -> str:
        self.simulation = simulate(
            self.spec, measurement.profile, self.calibration, capacity=self.capacity, seed=self.seed,
            record=self.record_requests, metrics=self.metrics, node_cpu=self.node_cpu, others_cores=self.others_cores,
            open_loop=self.open_loop,
            monitor_interval=measurement.monitor_interval_s,
        )
        first = self.simulation.write_measured(measurement.folder)
        recorder.update(monitor_first_sample_at=first)
        return "completed"  # the step's outcome, as run.json's step status (the protocol's)

    def tear_down(self) -> str:
        return "simulated: nothing to tear down"
