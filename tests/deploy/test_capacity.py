from __future__ import annotations

import pytest

from servetune.config import DeploymentSpec, ResourceAmounts
from servetune.deploy.capacity import Capacity, CapacityError, parse_capacity


def test_parse_cores_millicores_and_memory_quantities() -> None:
    assert parse_capacity("cpu=2,memory=8Gi") == Capacity(cpu_cores=2.0, memory_bytes=8 * 2**30)
    assert parse_capacity(" memory=512Mi , cpu=1500m") == Capacity(cpu_cores=1.5, memory_bytes=512 * 2**20)
    assert parse_capacity("cpu=0.5,memory=4G").memory_bytes == 4_000_000_000


@pytest.mark.parametrize("text", ["", "cpu=2", "memory=8Gi", "cpu=2,memory=8Gi,gpu=1", "cpu=two,memory=8Gi",
                                  "cpu=2,memory=8Xi", "cpu=0,memory=8Gi", "cpu=2,cpu=3,memory=1Gi"])
def test_bad_capacities_say_what_is_expected(text: str) -> None:
    with pytest.raises(CapacityError, match="capacity"):
        parse_capacity(text)


def test_pods_that_fit_by_cpu_and_by_memory() -> None:
    spec = DeploymentSpec(requests=ResourceAmounts(cpu=0.5, memory_mb=1024), limits=None)
    assert Capacity(cpu_cores=2.0, memory_bytes=16 * 2**30).pods_that_fit(spec) == 4  # CPU bound
    assert Capacity(cpu_cores=8.0, memory_bytes=3 * 2**30).pods_that_fit(spec) == 3  # memory bound
    assert Capacity(cpu_cores=0.4, memory_bytes=3 * 2**30).pods_that_fit(spec) == 0
