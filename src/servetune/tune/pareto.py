"""Pareto fronts over objective vectors where lower is better on every axis.

`fronts` is the non-dominated sorting of NSGA-II (Deb et al. 2002): front 0 holds the points no other point
dominates, front 1 those only front 0 dominates, and so on. `crowding` spreads the search along a front.
`hypervolume` measures a whole front against a reference point (larger is better): the benchmark compares
search strategies with it at equal budgets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Point = Sequence[float]


def dominance_matrix(points: Sequence[Point]) -> np.ndarray:
    """`m[i, j]` is True when point i dominates point j (no worse everywhere, better somewhere)."""
    values = np.asarray(points, dtype=float).reshape(len(points), -1)
    no_worse = (values[:, None, :] <= values[None, :, :]).all(axis=2)
    better = (values[:, None, :] < values[None, :, :]).any(axis=2)
    return no_worse & better


def non_dominated(points: Sequence[Point]) -> list[int]:
    """Indexes of the points no other point dominates, in order."""
    if not points:
        return []
    dominated = dominance_matrix(points).any(axis=0)
    return [int(i) for i in np.flatnonzero(~dominated)]


def fronts(points: Sequence[Point]) -> list[list[int]]:
    """Non-dominated sorting: the indexes of each successive front."""
    if not points:
        return []
    matrix = dominance_matrix(points)
    left = np.ones(len(points), dtype=bool)
    result = []
    while left.any():
        dominated = (matrix & left[:, None]).any(axis=0)
        front = np.flatnonzero(left & ~dominated)
        result.append([int(i) for i in front])
        left[front] = False
    return result


def crowding(points: Sequence[Point]) -> list[float]:
    """NSGA-II's crowding distance of each point within its front; the extremes get infinity."""
    count = len(points)
    if count <= 2:
        return [math.inf] * count
    values = np.asarray(points, dtype=float)
    distance = np.zeros(count)
    for axis in range(values.shape[1]):
        order = np.argsort(values[:, axis], kind="stable")
        column = values[order, axis]
        distance[order[0]] = distance[order[-1]] = math.inf
        # an axis with an infinite end (e.g. every accuracy unknown) spreads nothing; inf - inf is not computed
        if not (math.isfinite(column[0]) and math.isfinite(column[-1])) or column[-1] <= column[0]:
            continue
        distance[order[1:-1]] += (column[2:] - column[:-2]) / (column[-1] - column[0])
    return [float(d) for d in distance]


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """The volume dominated by `points` and bounded by `reference` (points beyond it add nothing).

    Exact, by slicing along the first axis (HSO); fine for the fronts of a tune (tens to hundreds of
    points, 2-4 objectives).
    """
    inside = [tuple(p) for p in points if all(x < r for x, r in zip(p, reference, strict=True))]
    if not inside:
        return 0.0
    return _slice_volume(sorted(set(inside)), tuple(reference))


def _slice_volume(points: list[tuple[float, ...]], reference: tuple[float, ...]) -> float:
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in points)
    volume = 0.0
    ordered = sorted(points)
    for index, point in enumerate(ordered):
        upper = ordered[index + 1][0] if index + 1 < len(ordered) else reference[0]
        width = upper - point[0]
        if width <= 0:
            continue
        slab = [p[1:] for p in ordered[: index + 1]]
        volume += width * _slice_volume(_non_dominated_tuples(slab), reference[1:])
    return volume


def _non_dominated_tuples(points: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    unique = sorted(set(points))
    return [unique[i] for i in non_dominated(unique)]
