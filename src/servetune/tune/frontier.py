"""The Pareto front of the feasible candidates, the recommended one, and why there may be none.

Two recommendation rules, for a user who wants one answer (`Rule`):

- `LEAST_MEMORY`, when the response time is bounded (`--max-response-ms`, `--no-slower-than`,
  `--better-than`): among the candidates that meet every constraint, the least memory requested; among those
  within 2 % of it, the least CPU requested; among those within 2 % of that, the shortest response time.
  Memory comes first because it is what each replica holds for the whole run (the model is loaded per
  replica) and what most often keeps pods Pending; the bound keeps it from trading speed away.
- `KNEE`, when nothing bounds the response time: the knee of the front, the candidate with the least product
  memory requested x CPU requested x response time. Each factor counts by its ratio, so units do not matter,
  and at the knee saving 1 % more of one figure costs more than 1 % of another: least memory alone would
  pick 0.05 CPU at a response time of seconds. The tune also caps the response time then (a multiple of
  the fastest baseline's, `constraints.UNBOUNDED_RESPONSE_FACTOR`), so no pick is several times slower than
  what the user compares it with.

Either rule breaks ties by accuracy (higher first).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from enum import Enum

from servetune.errors import FailedError
from servetune.tune.constraints import Constraints
from servetune.tune.pareto import non_dominated
from servetune.tune.search import Evaluation

TIE_BAND = 0.02


class Rule(Enum):
    """How one candidate is picked from the front (the module docstring says when each applies); the value
    is the rule in words, for the report and frontier.json."""

    LEAST_MEMORY = ("least memory requested among the candidates meeting every constraint; within 2 % of it, "
                    "least CPU requested; within 2 % of that, shortest response time")
    KNEE = ("no bound on the response time: the knee of the front, the least product memory requested x CPU "
            "requested x response time among the candidates meeting every constraint (saving 1 % more of one "
            "would cost more than 1 % of another)")


class EmptyFrontier(FailedError, ValueError):
    """No candidate met the constraints; the message says which constraint excluded them."""


def frontier(evaluations: Sequence[Evaluation], rule: Rule = Rule.LEAST_MEMORY) -> list[Evaluation]:
    """The feasible candidates no other feasible candidate dominates, in the recommendation rule's order;
    of twins with the same predicted objectives, only the one with the most memory headroom (see `twins`)."""
    feasible = [e for e in evaluations if e.feasible and e.statistics is not None]
    front = [feasible[i] for i in non_dominated([e.objectives() for e in feasible])]
    return by_rule([group[0] for group in twins(front).values()], rule)


def twins(evaluations: Sequence[Evaluation]) -> dict[tuple, list[Evaluation]]:
    """Candidates grouped by their objectives; first in each group the one with the largest memory limit
    (the most room above the calibrated peak: a real process and its page cache can exceed the resident set
    the calibration saw, and a pod over its limit is killed), then the smallest CPU limit, the fewest
    workers and threads."""
    groups: dict[tuple, list[Evaluation]] = {}
    for e in evaluations:
        groups.setdefault(e.objectives(), []).append(e)
    for group in groups.values():
        group.sort(key=lambda e: (-e.candidate.memory_limit_mb, e.candidate.cpu_limit, e.candidate.workers,
                                  e.candidate.threads or 0))
    return groups


def by_rule(evaluations: Sequence[Evaluation], rule: Rule = Rule.LEAST_MEMORY) -> list[Evaluation]:
    """Ordered by the recommendation rule: the first is the recommended one, then the next best, and so on."""
    if rule is Rule.KNEE:
        return sorted(evaluations, key=knee_key)
    left = list(evaluations)
    ordered = []
    while left:
        best = recommend(left)
        ordered.append(best)
        left.remove(best)
    return ordered


def knee_key(evaluation: Evaluation) -> tuple[float, float]:
    """The knee rule's order: the product of memory, CPU and response time (as a sum of logs), then accuracy."""
    accuracy, memory, cpu, response = evaluation.objectives()
    figures = (memory, cpu, response)
    size = sum(math.log(x) for x in figures) if all(0 < x < math.inf for x in figures) else math.inf
    return size, accuracy


def recommend(evaluations: Sequence[Evaluation], rule: Rule = Rule.LEAST_MEMORY) -> Evaluation:
    """The rule, over candidates already known to be feasible."""
    if rule is Rule.KNEE:
        return min(evaluations, key=knee_key)
    pool = list(evaluations)
    for objective in (1, 2):  # memory requested, then CPU requested
        least = min(e.objectives()[objective] for e in pool)
        pool = [e for e in pool if e.objectives()[objective] <= least * (1 + TIE_BAND)]
    return min(pool, key=lambda e: (e.objectives()[3], e.objectives()[1], e.objectives()[2], e.objectives()[0]))


def why_empty(evaluations: Sequence[Evaluation], constraints: Constraints) -> str:
    """Which constraint excluded the candidates: the one every candidate broke, or each one's share."""
    total = len(evaluations)
    if total == 0:
        return "no candidate was evaluated (is the budget 0?)"
    broken = Counter(flag for e in evaluations for flag in {v.constraint for v in e.violations})
    everyone = [flag for flag, count in broken.items() if count == total]
    closest = min(evaluations, key=lambda e: e.violation)
    nearest = f"; the nearest candidate ({closest.candidate.label()}) missed by: " + "; ".join(
        v.message for v in closest.violations)
    if everyone:
        flags = " and ".join(f"{flag} {value_of(flag, constraints)}" for flag in sorted(everyone))
        return f"no candidate met the constraints: {flags} excluded all {total:,} candidates{nearest}"
    shares = ", ".join(f"{flag} {value_of(flag, constraints)} excluded {count:,}"
                       for flag, count in broken.most_common())
    return f"no candidate met every constraint at once (of {total:,}: {shares}){nearest}"


def value_of(flag: str, constraints: Constraints) -> str:
    return f"({dict(constraints.describe()).get(flag, '')})"
