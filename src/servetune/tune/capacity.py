"""The cluster's capacity: how many pods fit before the rest stay Pending."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from servetune.config import DeploymentSpec
from servetune.errors import ServetuneError

MIB = 1024 * 1024
_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


class CapacityError(ServetuneError, ValueError):
    """A capacity that cannot be read; the message says what was wrong."""


@dataclass(frozen=True)
class Capacity:
    """Allocatable CPU cores and memory bytes of the cluster (all nodes together)."""

    cpu_cores: float
    memory_bytes: int

    def pods_that_fit(self, spec: DeploymentSpec) -> int:
        """Pods of `spec` the scheduler can place; the rest stay Pending."""
        by_cpu = math.floor(self.cpu_cores / spec.requests.cpu + 1e-9)
        by_memory = self.memory_bytes // (spec.requests.memory_mb * MIB)
        return int(min(by_cpu, by_memory))


def parse_capacity(text: str) -> Capacity:
    """'cpu=2,memory=8Gi' (CPU in cores or millicores '1500m'; memory a Kubernetes quantity) -> Capacity."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in ("cpu", "memory") or key in fields:
            raise CapacityError(f"capacity {text!r}: expected 'cpu=CORES,memory=QUANTITY' (e.g. cpu=2,memory=8Gi)")
        fields[key] = value.strip()
    if set(fields) != {"cpu", "memory"}:
        raise CapacityError(f"capacity {text!r}: needs both cpu= and memory= (e.g. cpu=2,memory=8Gi)")
    return Capacity(cpu_cores=_cpu(fields["cpu"], text), memory_bytes=_memory(fields["memory"], text))


def _cpu(value: str, text: str) -> float:
    match = re.fullmatch(r"([0-9]*\.?[0-9]+)(m?)", value)
    if not match or float(match.group(1)) <= 0:
        raise CapacityError(f"capacity {text!r}: cpu must be a positive number of cores or millicores ('1500m')")
    return float(match.group(1)) / (1000 if match.group(2) else 1)


def _memory(value: str, text: str) -> int:
    match = _QUANTITY.match(value)
    if not match or match.group(2) not in _UNITS or float(match.group(1)) <= 0:
        raise CapacityError(f"capacity {text!r}: memory must be a positive quantity like 8Gi, 512Mi or 4G")
    return int(float(match.group(1)) * _UNITS[match.group(2)])
