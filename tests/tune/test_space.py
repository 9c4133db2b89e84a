import pytest
import yaml

from servetune.config import DeploymentSpec
from servetune.deploy.spec import load_deployment_spec, spec_yaml
from servetune.tune.space import (
    DEFAULT_SPACE,
    SpaceError,
    candidate_from_genes,
    candidate_spec,
    load_space,
)


def write(tmp_path, data) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_the_bundled_space_is_large_and_holds_fixed_and_autoscaled_candidates():
    space = load_space()
    assert space.size() > 1_000_000  # far beyond a grid's reach: the search is what makes it tractable
    kinds = dict(space.genes())["scaling"]
    assert kinds == ["fixed", "autoscaled"]
    assert load_space(DEFAULT_SPACE) == space


def test_every_candidate_becomes_a_valid_spec_that_reads_back(tmp_path):
    space = load_space()
    base = load_deployment_spec(space.base)
    genes = space.genes()
    for genome in [tuple(0 for _ in genes), tuple(len(c) - 1 for _, c in genes),
                   tuple(i % len(c) for i, (_, c) in enumerate(genes))]:
        candidate = candidate_from_genes(space, genome)
        spec = candidate_spec(candidate, base)
        assert spec.requests.cpu == candidate.cpu_request and spec.limits.cpu == candidate.cpu_limit
        assert spec.limits.memory_mb == candidate.memory_limit_mb >= spec.requests.memory_mb
        path = tmp_path / "spec.yaml"
        path.write_text(spec_yaml(spec, every_field=True))
        assert load_deployment_spec(path) == spec
        if candidate.autoscaled:
            hpa = spec.autoscaling
            assert (hpa.min_replicas, hpa.max_replicas) == (candidate.min_replicas, candidate.max_replicas)
            assert hpa.behavior.scale_down.stabilization_window_seconds == candidate.scale_down_stabilization_s
        else:
            assert spec.autoscaling is None and spec.replicas == candidate.replicas


def test_a_scale_up_policy_reaches_the_hpa_behavior():
    space = load_space()
    names = [name for name, _ in space.genes()]
    genome = tuple({"scaling": 1, "scale_up": 2}.get(name, 0) for name in names)
    spec = candidate_spec(candidate_from_genes(space, genome), DeploymentSpec())
    [policy] = spec.autoscaling.behavior.scale_up.policies
    assert (policy.type, policy.value, policy.period_seconds) == ("Pods", 1, 60)


def test_an_unknown_field_names_the_file_the_field_and_the_allowed_ones(tmp_path):
    path = write(tmp_path, {"cpu_request": [0.1], "memory_request_mb": [128], "cpu_requests": [0.2]})
    with pytest.raises(SpaceError) as error:
        load_space(path)
    message = str(error.value)
    assert str(path) in message and "cpu_requests: unknown field" in message and "cpu_limit_ratio" in message
    path = write(tmp_path, {"cpu_request": [0.1], "memory_request_mb": [128],
                            "autoscaling": {"target": [50]}})
    with pytest.raises(SpaceError, match=r"autoscaling.target: unknown field \(allowed: min_replicas"):
        load_space(path)


@pytest.mark.parametrize(("data", "expected"), [
    ({"cpu_request": [0.1], "memory_request_mb": [128], "cpu_limit_ratio": [0.5]}, "cpu_limit_ratio: 0.5 outside"),
    ({"cpu_request": [], "memory_request_mb": [128]}, "cpu_request"),
    ({"memory_request_mb": [128]}, "cpu_request: Field required"),
    ({"cpu_request": [0.1], "memory_request_mb": [128], "autoscaling": None}, "no scaling choice"),
    ({"cpu_request": [0.1], "memory_request_mb": [128],
      "autoscaling": {"min_replicas": [3], "max_replicas": [2]}}, "every max_replicas is below"),
    ("cpu_request: [0.1\n", "invalid YAML"),
    ("cpu_request: [0.1]\nmemory_request_mb: [128]\ncpu_request: [0.5]\n", "line 3: duplicate key 'cpu_request'"),
    ("- 1\n- 2\n", "expected a mapping"),
    ({"cpu_request": [0.1], "memory_request_mb": [128], "base": "no-such-spec"}, "base: no-such-spec"),
])
def test_bad_spaces_are_refused_with_the_reason(tmp_path, data, expected):
    with pytest.raises(SpaceError, match="space.yaml") as error:
        load_space(write(tmp_path, data))
    assert expected in str(error.value)


def test_a_space_that_is_not_utf8_text_is_refused_with_the_byte(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_bytes(b"cpu_request: [0.1]\n\xff\n")
    with pytest.raises(SpaceError, match=r"space.yaml: not UTF-8 text \(byte 19: invalid start byte\)"):
        load_space(path)


def test_a_missing_space_file_is_named(tmp_path):
    with pytest.raises(SpaceError, match="no such search space file"):
        load_space(tmp_path / "nope.yaml")
