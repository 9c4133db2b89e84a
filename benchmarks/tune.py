"""Speed and fidelity of `servetune simulate`.

    python benchmarks/tune.py [--repeats N] [--runs DIR] [--seeds N] [--calibration FILE]

Speed: the full 30-minute reference profile simulated for the bundled specs, on one core; the median of
`--repeats` simulations (CPU time of this process, and wall time), and the candidates per second it allows.

Fidelity (with --runs DIR): every real run folder in DIR (made by `servetune run --backend local`, with its
spec.yaml, load_profile.yaml and run.json) is simulated at the same compression with the local backend's
semantics, and the four reference statistics plus CPU requested and max replicas are compared, simulated
(mean of --seeds seeds) against measured. On a machine shared with other work the cores the servers get
are not the machine's: the simulation is given the CPU the run's pods used in its busiest phase plus the
load driver's CPU at that phase's rate (`--node-cpu`), the one figure it takes from the real run; with
--no-node-cpu it assumes the whole machine. A run folder may hold `node.json` (`others_cores`: the CPU
other processes took during the run, from /proc/stat less the run's own), printed for context.
Tolerances: memory and CPU requested, transaction rate within 10 %, response time within 30 % or 5 ms,
max replicas equal.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from servetune.analyze.stats import summarize
from servetune.config import RunSummary
from servetune.deploy.cgroups import allocatable
from servetune.deploy.spec import load_deployment_spec
from servetune.load.profile import load_profile, parse_profile
from servetune.tune.calibration import default_calibration, load_calibration
from servetune.tune.from_run import busiest_cores
from servetune.tune.simulator import Capacity, MetricsTiming, simulate

SPECS = ("default", "demo", "fixed-1")


def main() -> None:
    args = parse_args()
    calibration = load_calibration(args.calibration) if args.calibration else default_calibration()
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs; date {datetime.date.today()}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"calibration: {calibration.model}, measured {calibration.date} ({calibration.machine})\n")
    speed(calibration, args.repeats)
    if args.runs:
        fidelity(calibration, Path(args.runs), args.seeds, not args.no_node_cpu)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="simulations per spec for the speed (median)")
    parser.add_argument("--runs", help="a folder of real run folders to compare with their simulation")
    parser.add_argument("--seeds", type=int, default=5, help="simulations per real run (their mean)")
    parser.add_argument("--calibration", help="calibration.json [default: the packaged one]")
    parser.add_argument("--no-node-cpu", action="store_true", help="simulate with the whole machine's cores")
    return parser.parse_args()


def speed(calibration, repeats: int) -> None:
    profile = load_profile("reference")
    print("| spec (reference profile, 30 min) | requests | CPU s (median) | wall s (median) | candidates/s |")
    print("|---|---|---|---|---|")
    for name in SPECS:
        spec = load_deployment_spec(name)
        cpu, wall, requests = [], [], 0
        for seed in range(repeats):
            began_cpu, began = time.process_time(), time.perf_counter()
            result = simulate(spec, profile, calibration, seed=seed)
            cpu.append(time.process_time() - began_cpu)
            wall.append(time.perf_counter() - began)
            requests = result.statistics.requests or 0
        median_cpu = statistics.median(cpu)
        print(f"| {name} | {requests:,} | {median_cpu:.3f} | {statistics.median(wall):.3f} | "
              f"{1 / median_cpu:.1f} |")
    print()


def within(real: float, simulated: float, relative: float, absolute: float = 0.0) -> bool:
    return abs(simulated - real) <= max(relative * abs(real), absolute)


def mean_summary(summaries: list[RunSummary], field: str) -> float:
    return statistics.fmean(getattr(s, field) or 0.0 for s in summaries)


def fidelity(calibration, runs: Path, seeds: int, node_from_run: bool) -> None:
    folders = sorted(p for p in runs.iterdir() if (p / "run.json").is_file() and (p / "spec.yaml").is_file())
    if not folders:
        sys.exit(f"error: {runs}: no run folders (with run.json and spec.yaml)")
    cores, memory = allocatable()
    print("| run | others' cores | node cores | mem req MiB real/sim | CPU req real/sim | OKAY/s real/sim | resp. ms real/sim "
          "| max replicas real/sim | within |")
    print("|---|---|---|---|---|---|---|---|---|")
    passed = 0
    for folder in folders:
        real = summarize(folder)
        spec = load_deployment_spec(folder / "spec.yaml")
        profile = parse_profile(folder / "load_profile.yaml")
        node = json.loads((folder / "node.json").read_text()) if (folder / "node.json").is_file() else {}
        others = node.get("others_cores")
        node_cpu = min(cores, busiest_cores(real, calibration)) if node_from_run else cores
        simulated = [
            simulate(spec, profile, calibration, seed=seed, capacity=Capacity(cores, memory),
                     metrics=MetricsTiming(backend="local"), node_cpu=node_cpu).statistics
            for seed in range(seeds)
        ]
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


if __name__ == "__main__":
    main()
