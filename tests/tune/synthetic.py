"""A synthetic evaluator with a known, hand-checkable shape, for testing the search without the simulator.

The "cluster" needs 0.3 cores of CPU on average. A fixed deployment holds its replicas; an autoscaled one
holds what the load needs at its target utilisation, within min..max. Response time falls with the CPU
the replicas may use (limits); requests fail when the replicas cannot reach 0.15 cores together.
"""

from __future__ import annotations

from servetune.config import RunSummary
from servetune.deploy.capacity import MIB
from servetune.tune.constraints import ModelFacts
from servetune.tune.space import Candidate, SearchSpace

LOAD_CORES = 0.3
FACTS = {"default": ModelFacts("default", "food11-test", 0.6, "evaluation", 70 * MIB)}


def summary(memory_KB: float, cpu: float, response_s: float | None, failure_rate: float = 0.0,
            replicas: float = 1.0) -> RunSummary:
    return RunSummary(
        run_dir="-", name="synthetic", memory_requested_KB=memory_KB, memory_used_KB=memory_KB / 2,
        transaction_rate=10.0, response_time_s=response_s, cpu_requested_core=cpu, cpu_used_core=LOAD_CORES,
        cpu_limit_core=cpu * 2, memory_limit_KB=memory_KB * 2, replica_seconds=replicas * 1800,
        mean_replicas=replicas, max_replicas=round(replicas + 0.5), evaluation_s=1800, runs=30,
        transactions=18000, okay=18000, failed=0, failure_rate=failure_rate,
    )


def replicas_of(candidate: Candidate) -> float:
    if not candidate.autoscaled:
        return float(candidate.replicas)
    needed = LOAD_CORES / (candidate.cpu_request * candidate.target_cpu_utilization / 100)
    return min(candidate.max_replicas, max(candidate.min_replicas, needed))


def evaluate(candidate: Candidate) -> RunSummary:
    replicas = replicas_of(candidate)
    usable = replicas * candidate.cpu_limit
    failure = 0.0 if usable >= 0.15 else 0.2
    response = 0.004 + 0.003 / usable
    return summary(replicas * candidate.memory_request_mb * 1024, replicas * candidate.cpu_request, response,
                   failure, replicas)


def small_space() -> SearchSpace:
    return SearchSpace.model_validate({
        "cpu_request": [0.05, 0.1, 0.2, 0.3, 0.5, 1.0],
        "cpu_limit_ratio": [1.0, 1.5, 2.0, 3.0],
        "memory_request_mb": [64, 96, 128, 256],
        "memory_limit_ratio": [1.0, 2.0],
        "replicas": [1, 2],
        "autoscaling": {"min_replicas": [1], "max_replicas": [2, 3, 5], "target_cpu_utilization": [40, 60, 90]},
    })
