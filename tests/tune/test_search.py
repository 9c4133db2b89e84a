import itertools
import math

import pytest

from servetune.config import DeploymentSpec
from servetune.tune.constraints import Constraints, baseline_bounds
from servetune.tune.frontier import frontier
from servetune.tune.pareto import hypervolume, non_dominated
from servetune.tune.search import Problem, evolve, grid_search, random_search
from servetune.tune.space import candidate_from_genes, spec_genome
from tune.synthetic import FACTS, evaluate, small_space

CONSTRAINTS = Constraints(max_response_ms=20, max_limit_ratio=2.0)


def problem(constraints: Constraints = CONSTRAINTS) -> Problem:
    return Problem(small_space(), FACTS, constraints, evaluate)


def true_front(constraints: Constraints = CONSTRAINTS) -> list[tuple]:
    """Every candidate of the space evaluated: the front the search should approach."""
    everything = problem(constraints)
    sizes = [len(choices) for _, choices in everything.space.genes()]
    everything.run(list(itertools.product(*(range(size) for size in sizes))), 0)
    return sorted(e.objectives() for e in frontier(everything.evaluations))


def volume(front, reference=(0.0, 300_000.0, 2.0, 0.05)) -> float:
    return hypervolume([p[1:] for p in front], reference[1:])


def test_evolve_finds_nearly_the_whole_front_with_a_fraction_of_the_space():
    space_size = small_space().size()
    found = problem()
    evolve(found, budget=200, population=24, seed=1)
    assert found.simulated == 200 < space_size / 3
    ours = sorted(e.objectives() for e in frontier(found.evaluations))
    best = true_front()
    assert volume(ours) >= 0.97 * volume(best)
    assert len(set(ours) & set(best)) >= 0.6 * len(set(best))  # distinct points: twins share objectives


def test_evolve_beats_random_and_grid_at_equal_budget():
    results = {}
    for name, strategy in [("evolve", lambda p: evolve(p, 120, population=24, seed=3)),
                           ("random", lambda p: random_search(p, 120, seed=3)),
                           ("grid", lambda p: grid_search(p, 120))]:
        run = problem()
        strategy(run)
        assert run.simulated <= 120
        results[name] = volume([e.objectives() for e in frontier(run.evaluations)])
    assert results["evolve"] > results["random"] and results["evolve"] > results["grid"]


def test_every_candidate_is_simulated_once_and_only_repaired_ones_reach_the_simulator():
    seen = []

    def counting(candidate):
        seen.append(candidate)
        return evaluate(candidate)

    run = Problem(small_space(), FACTS, CONSTRAINTS, counting)
    evolve(run, budget=150, population=20, seed=2)
    assert len(seen) == len(set(seen)) == 150
    least = FACTS["default"].minimum_memory_mb(1, CONSTRAINTS.memory_margin)
    assert all(c.memory_request_mb >= least for c in seen)  # 64 MiB is below 70 MiB x 1.15: never simulated
    assert all(c.cpu_limit <= 2 * c.cpu_request + 1e-9 for c in seen)


def test_frontier_holds_only_feasible_mutually_non_dominated_candidates():
    run = problem(Constraints(max_response_ms=12, max_limit_ratio=2.0))
    evolve(run, budget=150, population=20, seed=4)
    front = frontier(run.evaluations)
    assert front
    assert all(e.feasible and e.statistics.response_time_s <= 0.012 for e in front)
    points = [e.objectives() for e in front]
    assert non_dominated(points) == list(range(len(points)))
    # and nothing feasible outside the front dominates a front member
    feasible = [e.objectives() for e in run.evaluations if e.feasible]
    assert all(not all(q[i] <= p[i] for i in range(4)) or q == p or not any(q[i] < p[i] for i in range(4))
               for p in points for q in feasible)


def test_failures_make_a_candidate_infeasible_by_default():
    run = problem(Constraints())
    names = [name for name, _ in run.space.genes()]
    # the lowest CPU with one fixed replica and 128 MiB: 0.05 cores < the 0.15 needed -> 20 % failures
    genome = tuple(2 if name == "memory_request_mb" else 0 for name in names)
    [evaluation] = run.run([genome], 0)
    assert candidate_from_genes(run.space, genome).replicas == 1
    assert math.isclose(evaluation.statistics.failure_rate, 0.2)
    assert [v.constraint for v in evaluation.violations] == ["--max-failure-rate"]


def test_a_memory_request_below_the_calibrated_peak_is_never_simulated():
    calls = []
    run = Problem(small_space(), FACTS, Constraints(), lambda c: calls.append(c) or evaluate(c))
    [evaluation] = run.run([tuple(0 for _ in run.space.genes())], 0)  # 64 MiB < 70 MiB x 1.15
    assert calls == [] and evaluation.statistics is None
    assert [v.constraint for v in evaluation.violations] == ["--memory-margin"]
    assert "memory request 64 MiB < 81 MiB" in evaluation.violations[0].message


def test_candidates_differing_only_in_memory_share_one_simulation_with_identical_results():
    from servetune.tune.evaluate import MEMORY_SHARING

    plain = problem()
    evolve(plain, budget=150, population=20, seed=5)
    shared = Problem(small_space(), FACTS, CONSTRAINTS, evaluate, sharing=MEMORY_SHARING)
    evolve(shared, budget=150, population=20, seed=5)
    assert [e.candidate for e in shared.evaluations] == [e.candidate for e in plain.evaluations]
    for a, b in zip(shared.evaluations, plain.evaluations, strict=True):
        if a.statistics is not None:
            assert math.isclose(a.statistics.memory_requested_KB, b.statistics.memory_requested_KB)
            assert a.statistics.response_time_s == b.statistics.response_time_s
    assert plain.simulations == 150 and shared.simulations < 150


BASELINES = [  # specs a user may already have, each mapped to its nearest candidate of the small space
    {"requests": {"cpu": 0.2, "memory_mb": 128}, "limits": {"cpu": 0.4, "memory_mb": 256},
     "autoscaling": {"min_replicas": 1, "max_replicas": 3, "target_cpu_utilization": 60}},
    {"requests": {"cpu": 0.5, "memory_mb": 96}, "limits": {"cpu": 1.0, "memory_mb": 192}, "replicas": 1},
    {"requests": {"cpu": 0.1, "memory_mb": 96}, "limits": {"cpu": 0.2, "memory_mb": 192}, "replicas": 1},
]


def baseline_genome(data: dict) -> tuple[int, ...]:
    return spec_genome(small_space(), DeploymentSpec.model_validate(data))


def test_the_first_generation_holds_each_seed_once_and_random_candidates_for_the_rest():
    space = small_space()
    mine = baseline_genome(BASELINES[0])
    # 64 MiB is below the calibrated peak: the seed is repaired to 96 MiB like any candidate
    small = baseline_genome({"requests": {"cpu": 0.3, "memory_mb": 64}, "limits": {"cpu": 0.3, "memory_mb": 64}})
    run = problem()
    evolve(run, budget=36, population=12, seed=1, seeds=[("mine", mine), ("again", mine), ("small", small)])
    first = [e for e in run.evaluations if e.generation == 0]
    assert len(first) == 12
    assert [(e.seeded_from, e.candidate.label()) for e in first[:2]] == [
        ("mine; again", candidate_from_genes(space, mine).label()),
        ("small", "0.3cpu/0.3 96Mi/96Mi w1 fixed1"),
    ]
    assert not any(e.seeded_from for e in run.evaluations[2:])
    unseeded = problem()
    evolve(unseeded, budget=36, population=12, seed=1)
    # the rest: the random candidates an unseeded search starts with (the same random stream)
    assert [e.candidate for e in first[2:]] == [e.candidate for e in unseeded.evaluations[:10]]


@pytest.mark.parametrize("baseline", BASELINES)
def test_seeding_with_the_baseline_never_makes_the_result_worse_at_equal_budget(baseline):
    """Bounded by the baseline (--better-than), at a small budget: the seeded search always finds a front
    (every member no worse than the baseline), and over several random seeds a front at least as good."""
    genome = baseline_genome(baseline)
    statistics = evaluate(candidate_from_genes(small_space(), genome))
    bounded = baseline_bounds(CONSTRAINTS, {"mine": statistics}, "simulated", better_than=["mine"])
    volumes: dict[bool, list[float]] = {False: [], True: []}
    empty = {False: 0, True: 0}
    for seed in range(6):
        for seeded in (False, True):
            run = problem(bounded)
            evolve(run, budget=24, population=12, seed=seed, seeds=[("mine", genome)] if seeded else ())
            front = frontier(run.evaluations)
            empty[seeded] += not front
            volumes[seeded].append(volume([e.objectives() for e in front]))
    assert empty[True] == 0
    assert sum(volumes[True]) >= sum(volumes[False])
