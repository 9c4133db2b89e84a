from servetune.deploy.capacity import MIB, Capacity
from servetune.tune.constraints import Constraints, ModelFacts, baseline_bounds, space_problems
from servetune.tune.frontier import Rule, by_rule, frontier, recommend, why_empty
from servetune.tune.search import Evaluation, Problem, evolve
from servetune.tune.space import Candidate
from tune.synthetic import FACTS, evaluate, small_space, summary


def evaluation(memory_mib: float, cpu: float, response_ms: float, accuracy: float | None = 0.6) -> Evaluation:
    candidate = Candidate("default", cpu, cpu, int(memory_mib), int(memory_mib), 1, None, 1)
    return Evaluation(candidate, (), accuracy, summary(memory_mib * 1024, cpu, response_ms / 1000))


def test_the_rule_takes_least_memory_then_least_cpu_then_fastest_within_two_percent():
    a = evaluation(100, 0.50, 10)
    b = evaluation(101, 0.30, 12)  # within 2 % of the least memory, and less CPU
    c = evaluation(101.5, 0.301, 11)  # within 2 % on both: the fastest of the two wins
    d = evaluation(150, 0.10, 5)  # far more memory
    assert recommend([a, b, c, d]) is c
    assert by_rule([a, b, c, d]) == [c, b, a, d]


def test_with_no_response_bound_the_knee_is_picked_not_the_slowest_starved_candidate():
    starved = evaluation(96, 0.05, 2705)  # least memory and CPU: what least-memory-first picks
    knee = evaluation(96, 0.5, 26.8)
    costly = evaluation(200, 1.0, 20)
    assert recommend([starved, knee, costly]) is starved
    assert recommend([starved, knee, costly], Rule.KNEE) is knee
    assert by_rule([costly, starved, knee], Rule.KNEE) == [knee, costly, starved]
    assert frontier([starved, knee, costly], Rule.KNEE)[0] is knee
    # units do not matter: the same candidates in KiB and seconds order alike (the product of ratios)
    twice = evaluation(192, 0.5, 26.8)
    assert by_rule([twice, knee], Rule.KNEE) == [knee, twice]


def test_the_knee_breaks_a_tie_by_accuracy():
    low, high = evaluation(100, 0.3, 10, accuracy=0.5), evaluation(100, 0.3, 10, accuracy=0.7)
    assert recommend([low, high], Rule.KNEE) is high
    assert recommend([low, high]) is high


def test_a_model_without_measured_accuracy_cannot_win_on_accuracy():
    known = evaluation(100, 0.3, 10, accuracy=0.6)
    unknown = evaluation(100, 0.3, 10, accuracy=None)
    front = frontier([known, unknown])
    assert front == [known]  # same resources, and the unknown accuracy ranks as the worst


def test_empty_frontier_names_the_constraint_that_excluded_everything():
    run = Problem(small_space(), FACTS, Constraints(max_response_ms=1.0), evaluate)
    evolve(run, budget=60, population=20, seed=0)
    assert frontier(run.evaluations) == []
    message = why_empty(run.evaluations, run.constraints)
    assert message.startswith("no candidate met the constraints: --max-response-ms (1.0 ms) excluded all")
    assert "the nearest candidate" in message and "> 1.0 ms" in message


def test_empty_frontier_names_the_bound_a_better_than_baseline_set():
    baseline = summary(50 * 1024, 10.0, 1.0)  # less memory than any pod can hold
    bounds = baseline_bounds(Constraints(), {"default": baseline}, "simulated", better_than=["default"])
    run = Problem(small_space(), FACTS, bounds, evaluate)
    evolve(run, budget=40, population=20, seed=0)
    assert frontier(run.evaluations) == []
    message = why_empty(run.evaluations, run.constraints)
    assert message.startswith("no candidate met the constraints: --max-memory-requested-mib (50 MiB (the "
                              "simulated memory requested of default, --better-than)) excluded all"), message
    assert "missed by: memory requested" in message


def test_empty_frontier_from_several_constraints_gives_each_ones_share():
    run = Problem(small_space(), FACTS, Constraints(max_response_ms=10.0), evaluate)
    too_little_memory = (0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)  # 1 CPU but 64 MiB: never simulated
    too_slow = (0, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)  # 0.2 CPU, one replica: 19 ms
    run.run([too_little_memory, too_slow], 0)
    message = why_empty(run.evaluations, run.constraints)
    assert message.startswith("no candidate met every constraint at once (of 2: ")
    assert "--memory-margin" in message and "--max-response-ms (10.0 ms) excluded 1" in message


def test_infeasible_spaces_are_explained_before_any_simulation():
    space = small_space()
    greedy = {"default": ModelFacts("default", "big-model", 0.6, "evaluation", 400 * MIB)}
    [problem] = space_problems(space, greedy, Constraints())
    assert "every memory_request_mb is below 460 MiB" in problem and "OOM-killed" in problem
    cpu, memory = space_problems(space, FACTS, Constraints(max_limit_ratio=0.9))
    assert cpu.startswith("every cpu_limit_ratio") and memory.startswith("every memory_limit_ratio")
    unmeasured = {"default": ModelFacts("default", "variant", None, None, 70 * MIB)}
    [problem] = space_problems(space, unmeasured, Constraints(min_accuracy=0.5))
    assert "accuracy not measured (cannot be ranked on accuracy)" in problem
    [problem] = space_problems(space, FACTS, Constraints(capacity=Capacity(0.01, 8 * 1024 * MIB)))
    assert "fits --capacity" in problem
    assert space_problems(space, FACTS, Constraints()) == []


def test_twins_with_the_same_prediction_appear_once_with_the_most_memory_headroom():
    tight = evaluation(100, 0.3, 10)
    roomy = Evaluation(Candidate("default", 0.3, 0.3, 100, 200, 1, None, 1), (), 0.6, tight.statistics)
    other = evaluation(90, 0.5, 12)
    front = frontier([tight, roomy, other])
    assert front == [other, roomy]

