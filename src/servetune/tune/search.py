"""Search the space for the candidates on the Pareto front, at a budget of simulated candidates.

`evolve` is an NSGA-II-style evolutionary multi-objective search (Deb et al. 2002): a population of
candidates, each generation bred by binary tournaments (rank on the Pareto fronts, then crowding distance),
uniform crossover and mutation that steps a setting to a neighbouring value or redraws it; parents and
children compete for the next generation. Infeasible candidates rank after every feasible one, ordered by
how far off they are (Deb's constraint domination), so the search is pulled into the feasible region first
and spreads along its front after. Settings that would break a constraint before any simulation (memory
below the calibrated peak, limits above the allowed ratio, a model below `--min-accuracy`) are repaired to
the nearest allowed value, so no simulation is spent on them. A candidate is simulated at most once.
The first generation may be seeded with given genomes (the user's own specs, mapped to the nearest
candidates: warm-starting), the rest of it drawn at random, so the search starts from what the user has and
its mutations explore around it.

`random_search` and `grid_search` are the baselines the benchmark compares it with at equal budget.
`evaluate(candidate) -> RunSummary` is any callable (the simulator in production); `mapper` maps it over a
batch (`map`, or a process pool's `map`). Candidates that behave alike (`Sharing.key`: the same key means
the same simulation but for figures `Sharing.derive` computes exactly, such as memory requested) share one
simulation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from servetune.config import DeploymentSpec, RunSummary
from servetune.tune.constraints import (
    Constraints,
    ModelFacts,
    Violation,
    limit_ratio,
    measured_violations,
    static_violations,
)
from servetune.tune.pareto import crowding, fronts
from servetune.tune.space import Candidate, OutsideSpace, SearchSpace, candidate_from_genes, spec_genome

Evaluate = Callable[[Candidate], RunSummary]


@dataclass(frozen=True)
class Sharing:
    """Candidates with equal `key` run the same simulation; `derive(statistics, simulated, other)` turns
    the simulated candidate's statistics into the other's."""

    key: Callable[[Candidate], Hashable]
    derive: Callable[[RunSummary, Candidate, Candidate], RunSummary]


Mapper = Callable[[Callable, Iterable], Iterable]
Genome = tuple[int, ...]


@dataclass
class Evaluation:
    """One candidate, what the simulation predicted, and the constraints it breaks."""

    candidate: Candidate
    genome: Genome
    accuracy: float | None
    statistics: RunSummary | None  # None: not simulated (it breaks a constraint known beforehand)
    violations: list[Violation] = field(default_factory=list)
    generation: int = 0
    seeded_from: str = ""  # the seeds' names when the first generation was seeded with this candidate

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def violation(self) -> float:
        return sum(v.amount for v in self.violations)

    def objectives(self) -> tuple[float, float, float, float]:
        """Lower is better on each: -accuracy (unknown: worst), memory and CPU requested, response time."""
        stats = self.statistics
        accuracy = -self.accuracy if self.accuracy is not None else math.inf
        if stats is None:
            return accuracy, math.inf, math.inf, math.inf
        response = stats.response_time_s if stats.response_time_s is not None else math.inf
        return accuracy, stats.memory_requested_KB, stats.cpu_requested_core, response


@dataclass
class Problem:
    """What every strategy needs: the space, the models' facts, the constraints and the evaluator."""

    space: SearchSpace
    facts: dict[str, ModelFacts]  # by the space's model entry
    constraints: Constraints
    evaluate: Evaluate
    mapper: Mapper = map
    on_batch: Callable[[list[Evaluation]], None] | None = None  # called with every evaluation so far
    sharing: Sharing | None = None
    evaluations: list[Evaluation] = field(default_factory=list)
    seen: dict[Candidate, Evaluation] = field(default_factory=dict)
    shared: dict[Hashable, tuple[Candidate, RunSummary]] = field(default_factory=dict)
    simulations: int = 0  # simulator runs (fewer than candidates simulated when some share one)

    @property
    def simulated(self) -> int:
        """Candidates with simulated statistics."""
        return sum(1 for e in self.evaluations if e.statistics is not None)

    def run(self, genomes: Sequence[Genome], generation: int) -> list[Evaluation]:
        """Evaluate new candidates (each at most once); returns the evaluations of `genomes`, in order."""
        candidates = [candidate_from_genes(self.space, genome) for genome in genomes]
        fresh: dict[Candidate, Genome] = {}
        for candidate, genome in zip(candidates, genomes, strict=True):
            if candidate not in self.seen and candidate not in fresh:
                fresh[candidate] = genome
        to_simulate = []
        for candidate, genome in fresh.items():
            facts = self.facts[candidate.model]
            evaluation = Evaluation(candidate, genome, facts.accuracy, None,
                                    static_violations(candidate, facts, self.constraints), generation)
            self.seen[candidate] = evaluation
            self.evaluations.append(evaluation)
            if evaluation.feasible:
                to_simulate.append(evaluation)
        for evaluation, statistics in zip(to_simulate, self.statistics([e.candidate for e in to_simulate]),
                                          strict=True):
            evaluation.statistics = statistics
            evaluation.violations = measured_violations(statistics, self.constraints)
        if self.on_batch is not None and fresh:
            self.on_batch(self.evaluations)
        return [self.seen[candidate] for candidate in candidates]

    def statistics(self, candidates: list[Candidate]) -> list[RunSummary]:
        """Each candidate's statistics: one simulation per sharing key, derived for the others."""
        if self.sharing is None:
            results = list(self.mapper(self.evaluate, candidates))
            self.simulations += len(results)
            return results
        key, derive = self.sharing.key, self.sharing.derive
        needed = {}
        for candidate in candidates:
            if key(candidate) not in self.shared:
                needed.setdefault(key(candidate), candidate)
        for (k, candidate), statistics in zip(needed.items(), self.mapper(self.evaluate, list(needed.values())),
                                              strict=True):
            self.shared[k] = (candidate, statistics)
        self.simulations += len(needed)
        results = []
        for candidate in candidates:
            simulated, statistics = self.shared[key(candidate)]
            results.append(statistics if simulated == candidate else derive(statistics, simulated, candidate))
        return results


# --- genomes ----------------------------------------------------------------------------------------


def gene_sizes(space: SearchSpace) -> list[int]:
    return [len(choices) for _, choices in space.genes()]


def random_genome(sizes: Sequence[int], rng: np.random.Generator) -> Genome:
    return tuple(int(rng.integers(size)) for size in sizes)


def repair(genome: Genome, problem: Problem, rng: np.random.Generator) -> Genome:
    """Move settings that break a constraint known beforehand to the nearest allowed value, if any."""
    space, constraints = problem.space, problem.constraints
    genes = space.genes()
    position = {name: index for index, (name, _) in enumerate(genes)}
    values = list(genome)
    models = genes[position["model"]][1]
    if constraints.min_accuracy is not None:
        allowed = [i for i, m in enumerate(models) if (a := problem.facts[m].accuracy) is not None
                   and a >= constraints.min_accuracy]
        if allowed and values[position["model"]] not in allowed:
            values[position["model"]] = int(rng.choice(allowed))
    for ratio in ("cpu_limit_ratio", "memory_limit_ratio"):
        choices = genes[position[ratio]][1]
        allowed = [i for i, r in enumerate(choices) if r <= constraints.max_limit_ratio + 1e-9]
        if allowed and values[position[ratio]] > allowed[-1]:
            values[position[ratio]] = allowed[-1]
    facts = problem.facts[models[values[position["model"]]]]
    workers = genes[position["workers"]][1][values[position["workers"]]]
    least = facts.minimum_memory_mb(workers, constraints.memory_margin)
    memory = genes[position["memory_request_mb"]][1]
    enough = [i for i, mb in enumerate(memory) if mb >= least]
    if enough and memory[values[position["memory_request_mb"]]] < least:
        values[position["memory_request_mb"]] = enough[0]
    return tuple(values)


def mutate(genome: Genome, sizes: Sequence[int], rng: np.random.Generator, rate: float) -> Genome:
    """Each setting with probability `rate`: half the time a step to a neighbouring value, else a redraw."""
    values = list(genome)
    for index, size in enumerate(sizes):
        if size < 2 or rng.random() >= rate:
            continue
        if rng.random() < 0.5:
            step = int(rng.choice((-1, 1)))
            values[index] = min(size - 1, max(0, values[index] + step))
        else:
            values[index] = int(rng.integers(size))
    return tuple(values)


def crossover(first: Genome, second: Genome, rng: np.random.Generator) -> Genome:
    mask = rng.random(len(first)) < 0.5
    return tuple(a if pick else b for a, b, pick in zip(first, second, mask, strict=True))


# --- ranking ----------------------------------------------------------------------------------------


def rank(evaluations: Sequence[Evaluation]) -> list[tuple[int, float]]:
    """(rank, crowding) per evaluation: feasible ones by Pareto front, infeasible ones after, by violation."""
    keys: list[tuple[int, float]] = [(0, 0.0)] * len(evaluations)
    feasible = [i for i, e in enumerate(evaluations) if e.feasible]
    points = [evaluations[i].objectives() for i in feasible]
    levels = fronts(points)
    for level, front in enumerate(levels):
        distances = crowding([points[i] for i in front])
        for position, distance in zip(front, distances, strict=True):
            keys[feasible[position]] = (level, distance)
    infeasible = sorted((i for i, e in enumerate(evaluations) if not e.feasible),
                        key=lambda i: evaluations[i].violation)
    for order, index in enumerate(infeasible):
        keys[index] = (len(levels) + order, 0.0)
    return keys


def select(evaluations: Sequence[Evaluation], count: int) -> list[Evaluation]:
    """The `count` best by rank, then by crowding (wider spread first)."""
    keys = rank(evaluations)
    order = sorted(range(len(evaluations)), key=lambda i: (keys[i][0], -keys[i][1]))
    return [evaluations[i] for i in order[:count]]


def tournament(population: Sequence[Evaluation], keys: Sequence[tuple[int, float]],
               rng: np.random.Generator) -> Evaluation:
    a, b = (int(i) for i in rng.integers(len(population), size=2))
    better = (keys[a][0], -keys[a][1]) <= (keys[b][0], -keys[b][1])
    return population[a if better else b]


# --- strategies -------------------------------------------------------------------------------------


def fresh_genomes(problem: Problem, count: int, make: Callable[[], Genome], tries: int = 50,
                  start: Sequence[Genome] = ()) -> list[Genome]:
    """Up to `count` genomes of candidates not evaluated yet (nor twice in the batch): `start` first, then
    made ones."""
    batch: dict[Candidate, Genome] = {}

    def add(genome: Genome) -> None:
        candidate = candidate_from_genes(problem.space, genome)
        if candidate not in problem.seen and candidate not in batch:
            batch[candidate] = genome

    for genome in start[:count]:
        add(genome)
    for _ in range(count * tries):
        if len(batch) == count:
            break
        add(make())  # no draw once the batch is full: without seeds, the random stream is as before
    return list(batch.values())


def evolve(problem: Problem, budget: int, population: int = 64, seed: int = 0,
           seeds: Sequence[tuple[str, Genome]] = ()) -> list[Evaluation]:
    """NSGA-II until `budget` candidates have been simulated (or the space holds no new ones). `seed` seeds
    the random generator; `seeds` (name, genome) start the first generation, repaired like every genome
    and each candidate once (its evaluation's `seeded_from` names the seeds it came from); random ones fill
    the rest of it."""
    rng = np.random.default_rng(seed)
    sizes = gene_sizes(problem.space)
    rate = 1.0 / max(1, sum(1 for size in sizes if size > 1))
    seeded: dict[Candidate, tuple[Genome, list[str]]] = {}
    for name, genome in seeds:
        genome = repair(genome, problem, rng)
        seeded.setdefault(candidate_from_genes(problem.space, genome), (genome, []))[1].append(name)
    current: list[Evaluation] = []
    generation = 0
    while problem.simulated < budget:
        room = min(population, budget - problem.simulated)
        if not current:
            genomes = fresh_genomes(problem, room, lambda: repair(random_genome(sizes, rng), problem, rng),
                                    start=[genome for genome, _ in seeded.values()] if generation == 0 else ())
        else:
            parents, keys = current, rank(current)

            def child(parents: list[Evaluation] = parents, keys: list[tuple[int, float]] = keys) -> Genome:
                mother, father = tournament(parents, keys, rng), tournament(parents, keys, rng)
                genome = crossover(mother.genome, father.genome, rng) if rng.random() < 0.9 else mother.genome
                return repair(mutate(genome, sizes, rng, rate), problem, rng)

            genomes = fresh_genomes(problem, room, child)
            if len(genomes) < room:  # the neighbourhood is exhausted: explore elsewhere
                genomes += fresh_genomes(problem, room - len(genomes),
                                         lambda: repair(random_genome(sizes, rng), problem, rng))
        if not genomes:
            break
        children = problem.run(genomes, generation)
        if generation == 0:
            for evaluation in children:
                if evaluation.candidate in seeded:
                    evaluation.seeded_from = "; ".join(seeded[evaluation.candidate][1])
        current = select(current + children, population)
        generation += 1
    return problem.evaluations


def random_search(problem: Problem, budget: int, seed: int = 0, batch: int = 64) -> list[Evaluation]:
    """Candidates drawn uniformly from the space, with the same repair as the evolutionary search."""
    rng = np.random.default_rng(seed)
    sizes = gene_sizes(problem.space)
    while problem.simulated < budget:
        room = min(batch, budget - problem.simulated)
        genomes = fresh_genomes(problem, room, lambda: repair(random_genome(sizes, rng), problem, rng))
        if not genomes:
            break
        problem.run(genomes, 0)
    return problem.evaluations


def grid_search(problem: Problem, budget: int, batch: int = 64) -> list[Evaluation]:
    """An even grid over the values allowed beforehand (as a user would lay one out): every setting thinned
    to evenly spaced values until the grid fits the budget."""
    axes = allowed_values(problem)
    levels = [len(axis) for axis in axes]
    while math.prod(levels) > budget and max(levels) > 1:
        widest = max(range(len(levels)), key=lambda i: levels[i])
        levels[widest] -= 1
    thinned = [[axis[round(i * (len(axis) - 1) / max(1, count - 1))] for i in range(count)]
               for axis, count in zip(axes, levels, strict=True)]
    grid = itertools.product(*thinned)
    while problem.simulated < budget:
        genomes = list(itertools.islice(grid, batch))
        if not genomes:
            break
        problem.run(genomes, 0)
    return problem.evaluations


def allowed_values(problem: Problem) -> list[list[int]]:
    """Per setting, the indexes of the values no constraint known beforehand rules out for every candidate."""
    constraints = problem.constraints
    allowed = []
    genes = problem.space.genes()
    least = min(facts.minimum_memory_mb(min(problem.space.workers), constraints.memory_margin)
                for facts in problem.facts.values())
    for name, choices in genes:
        keep = list(range(len(choices)))
        if name in ("cpu_limit_ratio", "memory_limit_ratio"):
            keep = [i for i in keep if choices[i] <= constraints.max_limit_ratio + 1e-9]
        elif name == "memory_request_mb":
            keep = [i for i in keep if choices[i] >= least]
        elif name == "model" and constraints.min_accuracy is not None:
            keep = [i for i in keep if (a := problem.facts[choices[i]].accuracy) is not None
                    and a >= constraints.min_accuracy]
        allowed.append(keep or list(range(len(choices))))
    return allowed


def baseline_seeds(space: SearchSpace, baselines: dict[str, DeploymentSpec],
                   constraints: Constraints) -> tuple[list[tuple[str, Genome]], list[str]]:
    """Each baseline as the genome of its nearest candidate, to seed the search with; a note for each that
    has none in the space, and for each whose limits break --max-limit-ratio (its seed is moved within it)."""
    seeds, notes = [], []
    for name, spec in baselines.items():
        try:
            seeds.append((name, spec_genome(space, spec)))
        except OutsideSpace as error:
            notes.append(f"baseline {name} does not seed the search: {error}")
        ratio = math.ceil(round(limit_ratio(spec) * 100, 6)) / 100  # rounded up: the ratio that allows it
        if ratio > constraints.max_limit_ratio + 1e-9:
            notes.append(f"baseline {name}: its limits are up to {ratio:g} x its requests, above --max-limit-ratio "
                         f"{constraints.max_limit_ratio:g}: candidates like it are excluded (--max-limit-ratio "
                         f"{ratio:g} allows them)")
    return seeds, notes
