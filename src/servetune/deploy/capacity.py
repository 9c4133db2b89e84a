"""A cluster's capacity: how many pods fit before the rest stay Pending (the one-machine cluster's rule and
the simulator's)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from servetune.config import DeploymentSpec
from servetune.deploy.manifest_fields import ManifestError, cpu_cores, memory_bytes
from servetune.errors import ServetuneError

MIB = 1024 * 1024


class CapacityError(ServetuneError, ValueError):
    """A capacity that cannot be read; the message says what was wrong."""


@dataclass(frozen=True)
class Capacity:
    """Allocatable CPU cores and memory bytes of the cluster (all nodes together)."""

    cpu_cores: float
    memory_bytes: int

    def pods_that_fit(self, spec: DeploymentSpec) -> int:
        """Pods of `spec` the scheduler can place (the sum of their requests fits); the rest stay Pending."""
        # A small epsilon: 4 x 0.5 cores fit 2.0 cores despite float rounding.
        by_cpu = math.floor(self.cpu_cores / spec.requests.cpu + 1e-9)
        by_memory = self.memory_bytes // (spec.requests.memory_mb * MIB)
        return int(min(by_cpu, by_memory))


def parse_capacity(text: str) -> Capacity:
    """'cpu=2,memory=8Gi' (Kubernetes quantities: cores or millicores '1500m'; memory '8Gi') -> Capacity."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in ("cpu", "memory") or key in fields:
            raise CapacityError(f"capacity {text!r}: expected 'cpu=CORES,memory=QUANTITY' (e.g. cpu=2,memory=8Gi)")
        fields[key] = value.strip()
    if set(fields) != {"cpu", "memory"}:
        raise CapacityError(f"capacity {text!r}: needs both cpu= and memory= (e.g. cpu=2,memory=8Gi)")
    try:
        cores = cpu_cores(fields["cpu"], "capacity")
    except ManifestError:
        cores = 0.0
    if cores <= 0:
        raise CapacityError(f"capacity {text!r}: cpu must be a positive number of cores or millicores ('1500m')")
    try:
        memory = int(memory_bytes(fields["memory"], "capacity"))
    except ManifestError:
        memory = 0
    if memory <= 0:
        raise CapacityError(f"capacity {text!r}: memory must be a positive quantity like 8Gi, 512Mi or 4G")
    return Capacity(cpu_cores=cores, memory_bytes=memory)
