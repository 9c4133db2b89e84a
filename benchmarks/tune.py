"""The tuner's speed and search quality, on the calibrated simulator of the packaged model.

    python benchmarks/tune.py [--budget 2000] [--compare-budget 400] [--seeds 3] [--jobs 2] [--calibration FILE]

Search speed: the evolutionary search (what `servetune tune` runs) at `--budget` simulated candidates of the
bundled space on the full reference profile, over `--jobs` processes: wall seconds and candidates per second,
and the CPU seconds it took (all processes), which divided by the cores is the wall time on idle cores.
Search quality: the evolutionary search, random sampling (with the same repair of settings that break a
constraint known beforehand) and an even grid, each at the same budget of `--compare-budget` simulations,
under `--max-response-ms`: the hypervolume of each one's feasible front (memory requested, CPU requested,
response time; normalised by a reference point 10 % beyond the worst feasible value any of them found; larger
is better), its size and the least memory requested it found. The median over `--seeds` seeds.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from servetune.deploy.spec import load_deployment_spec
from servetune.load.profile import load_profile
from servetune.tune.calibration import Calibration, default_calibration, load_calibration
from servetune.tune.constraints import Constraints, model_facts
from servetune.tune.evaluate import MEMORY_SHARING, CandidateSimulator, process_pool
from servetune.tune.frontier import frontier
from servetune.tune.pareto import hypervolume
from servetune.tune.search import Problem, evolve, grid_search, random_search
from servetune.tune.simulator import MetricsTiming
from servetune.tune.space import load_space

STRATEGIES = {
    "evolutionary (NSGA-II)": lambda problem, budget, seed: evolve(problem, budget, seed=seed),
    "random": lambda problem, budget, seed: random_search(problem, budget, seed=seed),
    "grid": lambda problem, budget, seed: grid_search(problem, budget),
}


def make_problem(constraints: Constraints, mapper, calibration: Calibration) -> Problem:
    space = load_space()
    simulator = CandidateSimulator(load_profile("reference"), {"default": calibration},
                                   load_deployment_spec(space.base), metrics=MetricsTiming(backend="local"))
    facts = {"default": model_facts("default", calibration)}
    return Problem(space, facts, constraints, simulator, mapper, sharing=MEMORY_SHARING)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's processes, once closed)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def search_speed(budget: int, jobs: int, constraints: Constraints,
                 calibration: Calibration) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds, candidates simulated, simulator runs."""
    began, cpu = time.perf_counter(), cpu_seconds()
    with process_pool(jobs) as mapper:
        problem = make_problem(constraints, mapper, calibration)
        evolve(problem, budget)
    return time.perf_counter() - began, cpu_seconds() - cpu, problem.simulated, problem.simulations


def search_quality(budget: int, seeds: int, jobs: int, constraints: Constraints,
                   calibration: Calibration) -> dict[str, list[tuple]]:
    """Per strategy and seed: (hypervolume, front size, least memory MiB) against a shared reference point."""
    fronts: dict[str, list[list[tuple]]] = {name: [] for name in STRATEGIES}
    with process_pool(jobs) as mapper:
        for name, strategy in STRATEGIES.items():
            for seed in range(seeds if name != "grid" else 1):
                problem = make_problem(constraints, mapper, calibration)
                strategy(problem, budget, seed)
                fronts[name].append([e.objectives()[1:] for e in frontier(problem.evaluations)])
    every = [point for runs in fronts.values() for front in runs for point in front]
    if not every:
        return {name: [(0.0, 0, None)] for name in STRATEGIES}
    worst = [max(point[axis] for point in every) * 1.1 for axis in range(3)]
    results = {}
    for name, runs in fronts.items():
        results[name] = [
            (hypervolume([tuple(p[a] / worst[a] for a in range(3)) for p in front], (1.0, 1.0, 1.0)), len(front),
             min((p[0] / 1024 for p in front), default=None))
            for front in runs
        ]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--compare-budget", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-response-ms", type=float, default=15.0)
    parser.add_argument("--calibration", type=Path, help="calibration.json [default: the packaged model's]")
    args = parser.parse_args()
    calibration = load_calibration(args.calibration) if args.calibration else default_calibration()
    constraints = Constraints(max_response_ms=args.max_response_ms)
    load = os.getloadavg()[0]
    stamp = (f"{platform.node()}, {os.cpu_count()} CPUs, {datetime.datetime.now():%Y-%m-%d %H:%M}, "
             f"load {load:.1f} at start")
    console = Console()

    if args.budget > 0:
        seconds, cpu, simulated, runs = search_speed(args.budget, args.jobs, constraints, calibration)
        speed = Table(title=f"search speed, reference profile ({args.jobs} processes; {stamp}; load "
                            f"{os.getloadavg()[0]:.1f} at the end)")
        for column in ("strategy", "candidates simulated", "simulator runs", "wall s", "candidates/s", "CPU s",
                       f"CPU s / {args.jobs} (idle cores)"):
            speed.add_column(column, justify="right")
        speed.add_row("evolutionary (NSGA-II)", f"{simulated:,}", f"{runs:,}", f"{seconds:.1f}",
                      f"{simulated / seconds:.1f}", f"{cpu:.1f}", f"{cpu / args.jobs:.1f}")
        console.print(speed)
    if args.compare_budget <= 0:
        return
    quality = search_quality(args.compare_budget, args.seeds, args.jobs, constraints, calibration)
    table = Table(title=f"search quality at {args.compare_budget} candidates each, response time <= "
                        f"{args.max_response_ms:g} ms (median of {args.seeds} seeds; grid: 1; {stamp})")
    for column in ("strategy", "hypervolume", "front size", "least memory requested MiB"):
        table.add_column(column, justify="right")
    for name, runs in quality.items():
        least = [m for _, _, m in runs if m is not None]
        table.add_row(name, f"{statistics.median(v for v, _, _ in runs):.4f}",
                      f"{statistics.median(n for _, n, _ in runs):.0f}",
                      f"{statistics.median(least):.0f}" if least else "none feasible")
    console.print(table)


if __name__ == "__main__":
    main()
