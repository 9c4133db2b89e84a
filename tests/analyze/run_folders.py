"""Run folders for analysis tests: a tiny hand-made one with known answers, and realistic synthetic ones."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from servetune.config import LoadRunRow, RequestRecord, ResourceSample
from servetune.load.request_log import write_request_log
from servetune.load.siege import write_siege_log
from servetune.monitor.resource_csv import ResourceCsvWriter

RESOURCE_HEADER = "time,n_replica,cpu_req_core,mem_req_KB,cpu_lim_core,mem_lim_KB,cpu_use_core,mem_use_KB\n"
SIEGE_HEADER = (
    "      Date & Time,  Trans,  Elap Time,  Data Trans,  Resp Time,  Trans Rate,  Throughput,"
    "  Concurrent,    OKAY,   Failed\n"
)


def handmade_run(run_dir: Path) -> Path:
    """Answers by hand: mem req mean 393216, mem use mean 170000, cpu req 0.75, cpu use 0.65,
    replica-seconds 30, rate 38/30, response time (10*0.5 + 28*0.2)/38, p50/p95/p99 0.55/0.955/0.991."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "resource_usage.csv").write_text(
        RESOURCE_HEADER
        + "2026-11-29 05:00:00,1,0.5,262144,1,524288,0.2,100000\n"
        + "2026-11-29 05:00:05,1,0.5,262144,1,524288,0.4,110000\n"
        + "2026-11-29 05:00:10,2,1,524288,2,1048576,0.9,230000\n"
        + "2026-11-29 05:00:15,2,1,524288,2,1048576,1.1,240000\n"
    )
    (run_dir / "load_output.csv").write_text(
        SIEGE_HEADER
        + "2026-11-29 05:00:10,     10,      10.00,           0,       0.50,        1.00,        0.00,        0.50,      10,       0\n"
        + "**** phase 2 ****\n"
        + "2026-11-29 05:00:20,     30,      10.00,           0,       0.20,        3.00,        0.00,        0.60,      28,       2\n"
        + "2026-11-29 05:00:30,      0,      10.00,           0,       -nan,        0.00,        0.00,       -nan,       0,       5\n"
    )
    records = [RequestRecord(start=1_790_000_000 + i, latency_s=0.1 * (i + 1), status=200, bytes=120, phase=0)
               for i in range(10)]
    records += [RequestRecord(start=1_790_000_011, latency_s=0.01, status=503, bytes=40, phase=1),
                RequestRecord(start=1_790_000_012, latency_s=30.0, status=0, bytes=0, phase=1)]
    write_request_log(run_dir / "requests.csv", records)
    (run_dir / "load_profile.yaml").write_text(yaml.safe_dump({"name": "handmade", "phases": [
        {"users": 20, "delay": 100, "duration_s": 10, "repeats": 1},
        {"users": 30, "delay": 1, "duration_s": 10, "repeats": 2},
    ]}))
    return run_dir


PROFILE = [(20, 100, 5), (20, 50, 2), (20, 10, 2), (20, 3, 1), (20, 1, 5), (30, 1, 5), (20, 3, 1), (20, 60, 2),
           (20, 80, 7)]


def realistic_run(run_dir: Path, *, cpu_per_replica: float = 0.5, service_s: float = 0.12,
                  max_replicas: int = 3, accuracy: float | None = 0.81, seed: int = 1,
                  run_s: float = 60.0) -> Path:
    """A synthetic evaluation of the reference profile against an autoscaled deployment: 30 runs, samples
    every 5 s, replicas that follow the load, a per-request log and the profile."""
    rng = random.Random(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = datetime(2026, 11, 29, 6, 0, 0)
    rows, records, capacity_log = [], [], []
    replicas, t = 1, start
    for phase_index, (users, delay, repeats) in enumerate(PROFILE):
        for _ in range(repeats):
            offered = users / (delay / 2 + service_s)
            capacity = replicas * cpu_per_replica / service_s * 2
            utilisation = min(offered / capacity, 0.97)
            resp = service_s / (1 - utilisation) * rng.uniform(0.9, 1.1)
            okay = max(1, int(min(offered, capacity) * run_s * rng.uniform(0.95, 1.05)))
            failed = int(okay * 0.02) if offered > capacity else 0
            end = t + timedelta(seconds=run_s)
            rows.append(LoadRunRow(date_time=end.strftime("%Y-%m-%d %H:%M:%S"), trans=okay + failed,
                                   elap_time=run_s - 0.01 + rng.uniform(0, 0.05), data_trans=0, resp_time=resp,
                                   trans_rate=okay / run_s, throughput=0.0, concurrent=okay * resp / run_s,
                                   okay=okay, failed=failed))
            for i in range(okay + failed):
                status = 200 if i < okay else 503
                records.append(RequestRecord(start=t.timestamp() + run_s * i / (okay + failed),
                                             latency_s=rng.expovariate(1 / resp), status=status, bytes=180,
                                             phase=phase_index, replica=f"pod-{i % replicas}"))
            capacity_log.append((t, end, replicas, min(offered, capacity) * service_s))
            wanted = max(1, min(max_replicas, round(offered * service_s / (cpu_per_replica * 0.7) + 0.5)))
            replicas = wanted if wanted > replicas else max(wanted, replicas - 1)
            t = end
    with ResourceCsvWriter(run_dir / "resource_usage.csv") as writer:
        for begin, end, n, busy in capacity_log:
            s = begin
            while s < end:
                writer.write(ResourceSample(
                    time=s.strftime("%Y-%m-%d %H:%M:%S"), n_replica=n, cpu_req_core=cpu_per_replica * n,
                    mem_req_KB=262144 * n, cpu_lim_core=2 * cpu_per_replica * n, mem_lim_KB=524288 * n,
                    cpu_use_core=min(busy + 0.01 * n, 2 * cpu_per_replica * n) * rng.uniform(0.85, 1.0),
                    mem_use_KB=(150_000 + 8_000 * busy) * n * rng.uniform(0.98, 1.02)))
                s += timedelta(seconds=5)
    write_siege_log(run_dir / "load_output.csv", rows)
    write_request_log(run_dir / "requests.csv", records)
    (run_dir / "load_profile.yaml").write_text(yaml.safe_dump({"name": "reference", "phases": [
        {"users": u, "delay": d, "duration_s": run_s, "repeats": r} for u, d, r in PROFILE]}))
    if accuracy is not None:
        (run_dir / "run.json").write_text(json.dumps({"name": run_dir.name, "accuracy": accuracy,
                                                      "model": "food11-lite0-int8"}))
    return run_dir
