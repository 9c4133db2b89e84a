import pytest
import yaml

from servetune.config import DeploymentSpec
from servetune.deploy.spec import load_deployment_spec, spec_yaml
from servetune.tune.space import (
    DEFAULT_SPACE,
    OutsideSpace,
    SearchSpace,
    SpaceError,
    candidate_from_genes,
    candidate_spec,
    load_space,
    spec_genome,
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


def test_an_autoscaler_whose_max_is_not_above_its_min_is_a_fixed_count():
    space = SearchSpace.model_validate({"cpu_request": [0.5], "memory_request_mb": [256], "replicas": [],
                                        "autoscaling": {"min_replicas": [1, 2], "max_replicas": [1, 3]}})
    names = [name for name, _ in space.genes()]
    genome = tuple({"scaling": 0, "min_replicas": 0, "max_replicas": 0}.get(name, 0) for name in names)
    candidate = candidate_from_genes(space, genome)
    assert not candidate.autoscaled and candidate.replicas == 1
    assert candidate.label().endswith(" fixed1") and "hpa" not in candidate.label()
    spec = candidate_spec(candidate, DeploymentSpec())
    assert spec.autoscaling is None and spec.replicas == 1
    above = candidate_from_genes(space, tuple({"min_replicas": 1, "max_replicas": 0}.get(n, 0) for n in names))
    assert above.replicas == 2  # max 1 below min 2: it cannot scale either
    # 9 ratio pairs x (fixed 1 and 2, from min = max and max below min, + hpa1-3 and hpa2-3 x 3 targets)
    assert space.size() == 9 * (2 + 2 * 3)


def test_a_scale_up_policy_reaches_the_hpa_behavior():
    space = load_space()
    names = [name for name, _ in space.genes()]
    genome = tuple({"scaling": 1, "scale_up": 2, "max_replicas": 1}.get(name, 0) for name in names)
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


def nearest_candidate(data: dict, space: SearchSpace | None = None):
    space = space or load_space()
    return candidate_from_genes(space, spec_genome(space, DeploymentSpec.model_validate(data)))


def test_an_autoscaled_spec_maps_to_the_nearest_candidate_each_setting_snapped():
    candidate = nearest_candidate({
        "requests": {"cpu": 0.22, "memory_mb": 200}, "limits": {"cpu": 0.9, "memory_mb": 500},  # ratios 4.09, 2.5
        "workers": 2, "threads": 3,
        "autoscaling": {"min_replicas": 1, "max_replicas": 4, "target_cpu_utilization": 66, "behavior": {
            "scale_down": {"stabilization_window_seconds": 100},
            "scale_up": {"policies": [{"type": "Pods", "value": 1, "period_seconds": 60}]}}},
    })
    # 0.2 of 0.2/0.25; 192 of 192/224 MiB; limit ratios 4 and 2 (of 2/4); threads 2 of 1/2; target 70 of
    # 60/70; 120 s of 60/120/300; the scale-up policy the space lists
    assert candidate.label() == "0.2cpu/0.8 192Mi/384Mi w2t2 hpa1-4@70% down120s up1/60s"


def test_a_fixed_spec_maps_to_the_nearest_replicas_and_without_limits_to_the_largest_ratios():
    candidate = nearest_candidate({"requests": {"cpu": 1.2, "memory_mb": 2048}, "limits": None, "replicas": 5})
    assert candidate.label() == "1cpu/4 1024Mi/4096Mi w1 fixed3"


def test_a_spec_in_the_space_maps_to_itself_and_the_hpa_defaults_apply():
    # the demo spec: every setting but its memory limit (512 MiB, 2.67 x: the nearest ratio is 2) is in the space
    demo = nearest_candidate(load_deployment_spec("demo").model_dump())
    assert demo.label() == "0.25cpu/1 192Mi/384Mi w1 hpa1-3@70% down120s"
    # no behavior: Kubernetes' default scale-down window (300 s) and scale-up policy
    default = nearest_candidate(load_deployment_spec("default").model_dump())
    assert default.label().endswith("down300s")
    fixed = nearest_candidate(load_deployment_spec("fixed-1").model_dump())
    assert fixed.label() == "1cpu/1 512Mi/512Mi w1 fixed1"


def test_a_spec_outside_the_space_has_no_nearest_candidate(tmp_path):
    with pytest.raises(OutsideSpace, match="its model /models/other.onnx is not among the search space's models"):
        nearest_candidate({"model": "/models/other.onnx"})
    fixed_only = SearchSpace.model_validate({"cpu_request": [0.5], "memory_request_mb": [256], "replicas": [1],
                                             "autoscaling": None})
    with pytest.raises(OutsideSpace, match="autoscaled and the search space holds no autoscaled candidates"):
        nearest_candidate({"autoscaling": {"max_replicas": 3}}, fixed_only)
