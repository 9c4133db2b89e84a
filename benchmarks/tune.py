"""Speed and fidelity of `servetune simulate`, and speed and quality of `servetune tune`'s search.

    python benchmarks/tune.py [--repeats N] [--runs DIR] [--seeds N] [--calibration FILE]
        [--search-budget 2000] [--compare-budget 400] [--search-seeds 3] [--jobs 2] [--max-response-ms 25]

Speed: the full 30-minute reference profile simulated for the bundled specs, on one core, as `servetune
simulate` runs it and as the tune runs a local candidate (the load driver's CPU on this machine's cores); the
median of `--repeats` simulations (CPU time of this process, and wall time), and the candidates per second
it allows.

Fidelity (with --runs DIR): every real run folder in DIR (made by `servetune run --backend local`, with its
spec.yaml, load_profile.yaml and run.json) is simulated at the same compression with the local backend's
semantics, and the four reference statistics plus CPU requested and max replicas are compared, simulated
(mean of --seeds seeds) against measured. On a machine shared with other work the cores the servers get
are not the machine's: the simulation is given the machine's cores less what other processes took during
the load (`--node-cpu`; run.json's `host_cpu.others_cores`, from /proc/stat less the run's own processes,
or an older run folder's `node.json`), the one figure it takes from the real run. A run that recorded
neither gets the whole machine, or with --busiest-phase the CPU its pods used in their busiest phase plus
the load driver's at that phase's rate (a lower bound for a run on a shared machine: on a quiet one it
starves the simulation). With --no-node-cpu every run gets the whole machine.
Tolerances: memory and CPU requested, transaction rate within 10 %, response time within 30 % or 5 ms,
max replicas equal.

Search speed: the evolutionary search (what `servetune tune` runs) at `--search-budget` candidates of the
bundled space on the full reference profile, over `--jobs` processes: wall seconds, candidates per second, and
the CPU seconds of all its processes (on a shared machine, CPU seconds / cores is the wall time on idle cores).
Search quality: the evolutionary search, random sampling (with the same repair of settings that break a
constraint known beforehand) and an even grid over the allowed values, each at `--compare-budget` candidates,
response time at most `--max-response-ms`: the hypervolume of each one's feasible front (memory requested, CPU
requested, response time, normalised by a point 10 % beyond the worst feasible value any of them found;
larger is better), its size and the least memory requested found; the median over `--search-seeds` seeds.
A budget of 0 skips that part.

Before and after (`--against DIR`, another servetune source tree's `src`, e.g. `git archive REV src | tar -x -C
/tmp/before`): the speed and the search speed of this tree and of DIR side by side, each measured in a
process of its own, the two taking turns round by round (`--repeats` rounds) so that other work on the
machine slows both alike; the ratio of the medians; and whether the two give the same figures (the speed
specs' statistics and every candidate's of the search, by a digest): exit status 1 when they differ.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from servetune.analyze.stats import summarize
from servetune.config import DeploymentSpec, RunSummary
from servetune.deploy.capacity import Capacity
from servetune.deploy.spec import load_deployment_spec
from servetune.host.cgroups import allocatable
from servetune.load.profile import load_profile, parse_profile
from servetune.runfolder import SPEC_FILE, RunFolder
from servetune.sim.cpu import LEAST_CORES
from servetune.sim.simulate import MetricsTiming, simulate
from servetune.tune.calibration import Calibration, default_calibration, load_calibration
from servetune.tune.constraints import Constraints, model_facts
from servetune.tune.evaluate import MEMORY_SHARING, CandidateSimulator, memory_never_binds, process_pool
from servetune.tune.from_run import busiest_cores
from servetune.tune.frontier import frontier
from servetune.tune.pareto import hypervolume
from servetune.tune.search import Problem, evolve, grid_search, random_search
from servetune.tune.space import load_space

SPECS = ("default", "demo", "fixed-1")


def main() -> None:
    args = parse_args()
    calibration = load_calibration(args.calibration) if args.calibration else default_calibration()
    if args.child:
        print(json.dumps(child(args, calibration)))
        return
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs; date {datetime.date.today()}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"calibration: {calibration.model}, measured {calibration.date} ({calibration.machine})\n")
    if args.against:
        sys.exit(0 if before_and_after(args) else 1)
    speed(calibration, args.repeats)
    if args.runs:
        fidelity(calibration, Path(args.runs), args.seeds, not args.no_node_cpu, args.busiest_phase)
    constraints = Constraints(max_response_ms=args.max_response_ms)
    if args.search_budget > 0:
        search_speed(args.search_budget, args.jobs, constraints, calibration)
    if args.compare_budget > 0:
        search_quality(args.compare_budget, args.search_seeds, args.jobs, constraints, calibration)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="simulations per spec for the speed (median)")
    parser.add_argument("--runs", help="a folder of real run folders to compare with their simulation")
    parser.add_argument("--seeds", type=int, default=5, help="simulations per real run (their mean)")
    parser.add_argument("--calibration", help="calibration.json [default: the packaged one]")
    parser.add_argument("--no-node-cpu", action="store_true", help="simulate with the whole machine's cores")
    parser.add_argument("--busiest-phase", action="store_true", help="a run without host_cpu gets its busiest "
                        "phase's CPU as --node-cpu [default: the whole machine]")
    parser.add_argument("--search-budget", type=int, default=2000, help="candidates for the search speed")
    parser.add_argument("--compare-budget", type=int, default=400, help="candidates per strategy for the quality")
    parser.add_argument("--search-seeds", type=int, default=3, help="seeds per strategy for the quality")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="search processes")
    parser.add_argument("--max-response-ms", type=float, default=25.0, help="the quality's constraint")
    parser.add_argument("--against", help="another servetune tree's src: speed and search speed side by side")
    parser.add_argument("--child", choices=("speed", "search"), help=argparse.SUPPRESS)  # one measurement, JSON
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args()


def speed_cases() -> list[tuple[str, DeploymentSpec, dict]]:
    """Each spec as `servetune simulate` simulates it (Kubernetes' semantics, each pod bound by its quota
    only), then as the tune simulates a local candidate (the one-machine cluster's semantics, the pods and the
    load driver on this machine's cores)."""
    capacity = Capacity(*allocatable())
    local = {"capacity": capacity, "metrics": MetricsTiming(backend="local"), "node_cpu": capacity.cpu_cores}
    settings = {"": {}, f", local, {capacity.cpu_cores:g} cores": local}
    return [(name + suffix, load_deployment_spec(name), options)
            for suffix, options in settings.items() for name in SPECS]


def speed_round(calibration, seed: int) -> dict[str, dict]:
    """Each case simulated once: CPU and wall seconds, requests, and a digest of its statistics."""
    profile = load_profile("reference")
    measured = {}
    for name, spec, options in speed_cases():
        began_cpu, began = time.process_time(), time.perf_counter()
        result = simulate(spec, profile, calibration, seed=seed, **options)
        measured[name] = {"cpu": time.process_time() - began_cpu, "wall": time.perf_counter() - began,
                          "requests": result.statistics.requests or 0, "digest": digest([result.statistics])}
    return measured


def digest(summaries: list[RunSummary]) -> str:
    """A digest of every figure of the statistics (JSON keeps each float's every digit)."""
    text = json.dumps([s.model_dump(mode="json") for s in summaries], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def speed(calibration, repeats: int) -> None:
    rounds = [speed_round(calibration, seed) for seed in range(repeats)]
    print("| spec (reference profile, 30 min) | requests | CPU s (median) | wall s (median) | candidates/s |")
    print("|---|---|---|---|---|")
    for name in rounds[0]:
        median_cpu = statistics.median(r[name]["cpu"] for r in rounds)
        print(f"| {name} | {rounds[-1][name]['requests']:,} | {median_cpu:.3f} | "
              f"{statistics.median(r[name]['wall'] for r in rounds):.3f} | {1 / median_cpu:.1f} |")
    print()


def within(real: float, simulated: float, relative: float, absolute: float = 0.0) -> bool:
    return abs(simulated - real) <= max(relative * abs(real), absolute)


def mean_summary(summaries: list[RunSummary], field: str) -> float:
    return statistics.fmean(getattr(s, field) or 0.0 for s in summaries)


def others_cores(folder: Path, real: RunSummary) -> float | None:
    """The cores other processes took during the run's load: run.json's host_cpu, else an older node.json."""
    if real.others_cores is not None:
        return real.others_cores
    node = folder / "node.json"
    return json.loads(node.read_text()).get("others_cores") if node.is_file() else None


def fidelity(calibration, runs: Path, seeds: int, node_from_run: bool, busiest_phase: bool) -> None:
    folders = sorted(p for p in runs.iterdir() if RunFolder(p).holds_a_run() and (p / SPEC_FILE).is_file())
    if not folders:
        sys.exit(f"error: {runs}: no run folders (with run.json and spec.yaml)")
    cores, memory = allocatable()
    print("| run | others' cores | node cores | mem req MiB real/sim | CPU req real/sim | OKAY/s real/sim | resp. ms real/sim "
          "| max replicas real/sim | within |")
    print("|---|---|---|---|---|---|---|---|---|")
    passed = 0
    for folder in folders:
        real = summarize(folder)
        spec = load_deployment_spec(folder / SPEC_FILE)
        profile = parse_profile(RunFolder(folder).profile_copy)
        others = others_cores(folder, real)
        node_cpu, taken = cores, 0.0
        if node_from_run and others is not None:
            node_cpu, taken = min(cores, real.machine_cores or os.cpu_count() or cores), others
        elif node_from_run and busiest_phase:
            node_cpu = min(cores, busiest_cores(real, calibration))
        simulated = [
            simulate(spec, profile, calibration, seed=seed, capacity=Capacity(cores, memory),
                     metrics=MetricsTiming(backend="local"), node_cpu=node_cpu, others_cores=taken).statistics
            for seed in range(seeds)
        ]
        node_cpu = max(LEAST_CORES, node_cpu - taken)  # what the pods and the driver shared, for the table
        mem = (real.memory_requested_KB / 1024, mean_summary(simulated, "memory_requested_KB") / 1024)
        cpu = (real.cpu_requested_core, mean_summary(simulated, "cpu_requested_core"))
        rate = (real.transaction_rate, mean_summary(simulated, "transaction_rate"))
        resp = ((real.response_time_s or 0) * 1000, mean_summary(simulated, "response_time_s") * 1000)
        replicas = (real.max_replicas, round(statistics.median(s.max_replicas for s in simulated)))
        checks = {
            "mem": within(*mem, 0.10), "cpu": within(*cpu, 0.10), "rate": within(*rate, 0.10),
            "resp": within(*resp, 0.30, 5.0), "max": replicas[0] == replicas[1],
        }
        misses = [name for name, ok in checks.items() if not ok]
        passed += not misses
        others_text = "" if others is None else f"{others:.2f}"
        print(f"| {folder.name} | {others_text} | {node_cpu:.2f} | {mem[0]:.0f} / {mem[1]:.0f} | {cpu[0]:.3f} / {cpu[1]:.3f} | "
              f"{rate[0]:.2f} / {rate[1]:.2f} | {resp[0]:.1f} / {resp[1]:.1f} | {replicas[0]} / {replicas[1]} | "
              f"{'yes' if not misses else 'no: ' + ', '.join(misses)} |")
    print(f"\n{passed} of {len(folders)} runs within every tolerance")


STRATEGIES = {
    "evolutionary (NSGA-II)": lambda problem, budget, seed: evolve(problem, budget, seed=seed),
    "random": lambda problem, budget, seed: random_search(problem, budget, seed=seed),
    "grid": lambda problem, budget, seed: grid_search(problem, budget),
}


def make_problem(constraints: Constraints, mapper, calibration: Calibration) -> Problem:
    """As `servetune tune --backend local` sets it up: this machine's capacity and cores."""
    space = load_space()
    capacity = Capacity(*allocatable())
    simulator = CandidateSimulator(load_profile("reference"), {"default": calibration},
                                   load_deployment_spec(space.base), capacity, MetricsTiming(backend="local"),
                                   node_cpu=capacity.cpu_cores)
    facts = {"default": model_facts("default", calibration)}
    sharing = MEMORY_SHARING if memory_never_binds(space, capacity) else None
    return Problem(space, facts, replace(constraints, capacity=capacity), simulator, mapper, sharing=sharing)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's processes, once closed)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def search_round(budget: int, jobs: int, constraints: Constraints, calibration: Calibration) -> dict:
    """The evolutionary search at `budget` candidates: its counts, wall and CPU seconds, and a digest of
    every simulated candidate's statistics."""
    began, cpu = time.perf_counter(), cpu_seconds()
    with process_pool(jobs) as mapper:
        problem = make_problem(constraints, mapper, calibration)
        evolve(problem, budget)
    wall, cpu = time.perf_counter() - began, cpu_seconds() - cpu
    simulated = [e.statistics for e in problem.evaluations if e.statistics is not None]
    return {"candidates": problem.simulated, "simulations": problem.simulations, "wall": wall, "cpu": cpu,
            "digest": digest(simulated)}


SEARCH_HEADER = "| candidates | simulator runs | wall s | candidates/s | CPU s | CPU s / {jobs} | figures' digest |"


def search_row(measured: dict, jobs: int) -> str:
    return (f"{measured['candidates']:,} | {measured['simulations']:,} | {measured['wall']:.1f} | "
            f"{measured['candidates'] / measured['wall']:.1f} | {measured['cpu']:.1f} | "
            f"{measured['cpu'] / jobs:.1f} | {measured['digest']} |")


def search_speed(budget: int, jobs: int, constraints: Constraints, calibration: Calibration) -> None:
    measured = search_round(budget, jobs, constraints, calibration)
    print(f"| search (bundled space, reference profile, {jobs} processes) {SEARCH_HEADER.format(jobs=jobs)}")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| evolutionary (NSGA-II) | {search_row(measured, jobs)}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}\n")


def search_quality(budget: int, seeds: int, jobs: int, constraints: Constraints, calibration: Calibration) -> None:
    fronts: dict[str, list[list[tuple]]] = {name: [] for name in STRATEGIES}
    with process_pool(jobs) as mapper:
        for name, strategy in STRATEGIES.items():
            for seed in range(seeds if name != "grid" else 1):  # the grid has no randomness
                problem = make_problem(constraints, mapper, calibration)
                strategy(problem, budget, seed)
                fronts[name].append([e.objectives()[1:] for e in frontier(problem.evaluations)])
    every = [point for runs in fronts.values() for front in runs for point in front]
    worst = [max((p[axis] for p in every), default=1.0) * 1.1 for axis in range(3)]
    print(f"| strategy ({budget} candidates each, response time <= {constraints.max_response_ms:g} ms; median of "
          f"{seeds} seeds) | hypervolume | front size | least memory requested MiB |")
    print("|---|---|---|---|")
    for name, runs in fronts.items():
        volumes = [hypervolume([tuple(p[a] / worst[a] for a in range(3)) for p in front], (1.0, 1.0, 1.0))
                   for front in runs]
        least = [min(p[0] for p in front) / 1024 for front in runs if front]
        print(f"| {name} | {statistics.median(volumes):.4f} | {statistics.median(len(f) for f in runs):.0f} | "
              f"{f'{statistics.median(least):.0f}' if least else 'none feasible'} |")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}\n")


def child(args: argparse.Namespace, calibration: Calibration) -> dict:
    """One measurement for `--against`'s parent, in this process's servetune tree."""
    if args.child == "speed":
        return speed_round(calibration, args.seed)
    return search_round(args.search_budget, args.jobs, Constraints(max_response_ms=args.max_response_ms),
                        calibration)


def measure_in(tree: str, args: argparse.Namespace, *options: str) -> dict:
    """A child process's measurement with `tree` (a servetune src folder) first on its path."""
    passed = [*options, "--search-budget", str(args.search_budget), "--jobs", str(args.jobs),
              "--max-response-ms", str(args.max_response_ms)]
    if args.calibration:
        passed += ["--calibration", args.calibration]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([tree, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, __file__, *passed], env=environment, capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout)


def before_and_after(args: argparse.Namespace) -> bool:
    """This tree against `--against`'s, taking turns; True when both give the same figures."""
    trees = {"before": str(Path(args.against).resolve()), "now": str(Path(__file__).parents[1] / "src")}
    rounds: dict[str, list[dict]] = {label: [] for label in trees}
    for seed in range(args.repeats):
        for label in (list(trees) if seed % 2 == 0 else list(reversed(trees))):
            rounds[label].append(measure_in(trees[label], args, "--child", "speed", "--seed", str(seed)))
    same = all(b[name]["digest"] == n[name]["digest"] for b, n in zip(*rounds.values(), strict=True) for name in b)
    print(f"before: {trees['before']}; now: {trees['now']}; {args.repeats} rounds taking turns\n")
    print("| spec (reference profile, 30 min) | requests | CPU s before (median) | CPU s now (median) | now / before |")
    print("|---|---|---|---|---|")
    for name in rounds["now"][0]:
        before, now = (statistics.median(r[name]["cpu"] for r in rounds[label]) for label in trees)
        print(f"| {name} | {rounds['now'][-1][name]['requests']:,} | {before:.3f} | {now:.3f} | {now / before:.2f} |")
    print(f"\nsame statistics for every spec and seed: {'yes' if same else 'NO'}\n")
    if args.search_budget > 0:
        searches = {label: measure_in(tree, args, "--child", "search") for label, tree in trees.items()}
        print(f"| search (bundled space, reference profile, {args.jobs} processes) "
              f"{SEARCH_HEADER.format(jobs=args.jobs)}")
        print("|---|---|---|---|---|---|---|---|")
        for label, measured in searches.items():
            print(f"| {label} | {search_row(measured, args.jobs)}")
        print(f"now / before, CPU s: {searches['now']['cpu'] / searches['before']['cpu']:.2f}; same figures for "
              f"every candidate: {'yes' if searches['now']['digest'] == searches['before']['digest'] else 'NO'}")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}\n")
        same = same and searches["now"]["digest"] == searches["before"]["digest"]
    return same


if __name__ == "__main__":
    main()
