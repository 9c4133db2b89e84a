"""The simulator against cases computed by hand, and against analyze on the run folder it writes."""

from __future__ import annotations

import pytest

from servetune.analyze.stats import summarize
from servetune.config import AutoscalingSpec, DeploymentSpec, LoadPhase, LoadProfile, ResourceAmounts
from servetune.deploy.capacity import Capacity
from servetune.load.profile import load_profile
from servetune.sim.simulate import MetricsTiming, simulate
from servetune.tune.calibration import default_calibration
from tune.calibrations import constant_calibration


def fixed(replicas: int, cpu: float, limit: float | None, memory_mb: int = 256, threads: int = 1) -> DeploymentSpec:
    return DeploymentSpec(
        replicas=replicas, threads=threads, requests=ResourceAmounts(cpu=cpu, memory_mb=memory_mb),
        limits=None if limit is None else ResourceAmounts(cpu=limit, memory_mb=2 * memory_mb),
    )


def open_profile(rate: float, seconds: float) -> LoadProfile:
    return LoadProfile(name="open", phases=[LoadPhase(users=1, delay=1, rate=rate, duration_s=seconds)])


def test_open_loop_without_an_arrival_rate_is_refused_before_simulating():
    profile = LoadProfile(name="burst", phases=[LoadPhase(users=3, delay=0, duration_s=10)])
    with pytest.raises(ValueError, match=r"^profile burst: phase 1: open-loop mode needs `rate` when delay is 0$"):
        simulate(fixed(1, 1.0, None), profile, constant_calibration(10.0), open_loop=True)


def test_one_replica_poisson_arrivals_wait_like_md1() -> None:
    # M/D/1: service s = 10 ms, arrivals 50/s, load 0.5: mean wait rho*s / (2 (1 - rho)) = 5 ms, response 15 ms.
    simulation = simulate(fixed(1, 1.0, None), open_profile(50, 2000), constant_calibration(10.0), seed=1,
                          open_loop=True,
                          record=True)
    statistics = simulation.statistics
    assert statistics.failure_rate == 0
    assert statistics.transaction_rate == pytest.approx(50, rel=0.03)
    latencies = [r.latency_s for r in simulation.requests]
    assert sum(latencies) / len(latencies) == pytest.approx(0.015, rel=0.05)
    assert statistics.response_time_s in (0.01, 0.02)  # siege keeps 10 ms in its log, as analyze reads it
    assert statistics.latency_p50_s >= 0.010  # never faster than the service itself
    assert statistics.cpu_used_core == pytest.approx(0.5, rel=0.05)


def test_a_burst_under_a_cpu_quota_waits_for_the_next_periods() -> None:
    # 20 users at once, 10 ms of CPU each, limit 0.5 core: 50 ms of CPU per 100 ms period, so 5 requests
    # finish per period: at 10..50 ms, then 110..150 ms, 210..250 ms, 310..350 ms.
    profile = LoadProfile(name="burst", phases=[LoadPhase(users=20, delay=3000, duration_s=1.0)])
    simulation = simulate(fixed(1, 0.5, 0.5), profile, constant_calibration(10.0), record=True)
    burst = sorted(r.latency_s for r in simulation.requests if r.start == simulation.requests[0].start)
    expected = [period * 0.1 + k * 0.01 for period in range(4) for k in range(1, 6)]
    assert burst == pytest.approx(expected, abs=1e-6)
    assert simulation.statistics.response_time_s == pytest.approx(0.18, abs=1e-6)


def test_a_pods_inference_threads_serve_a_burst_together() -> None:
    # Two threads, no limit, a request alone would run 1.5x faster (parallelism): 4 users at once, 10 ms
    # each. Two start together, one thread each (10 ms); the other two wait and then do the same (20 ms).
    profile = LoadProfile(name="burst", phases=[LoadPhase(users=4, delay=3000, duration_s=1.0)])
    calibration = constant_calibration(10.0).model_copy(update={"parallelism": 1.5})
    simulation = simulate(fixed(1, 0.5, None, threads=2), profile, calibration, record=True)
    burst = sorted(r.latency_s for r in simulation.requests)
    assert burst == pytest.approx([0.01, 0.01, 0.02, 0.02], abs=1e-6)
    one_thread = simulate(fixed(1, 0.5, None, threads=1), profile, calibration, record=True)
    assert sorted(r.latency_s for r in one_thread.requests) == pytest.approx([0.01, 0.02, 0.03, 0.04], abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pods_on_one_core_take_turns_whichever_pods_the_requests_reach(seed) -> None:
    # 4 pods without limits on a node of 1 core: 4 requests of 10 ms at once keep the core busy until 40 ms,
    # however the Service spread them (the node's core is the bound, time-shared; a pod's one thread serves
    # a second request only after its first, so 3 share the core to 30 ms if two reach the same pod).
    profile = LoadProfile(name="burst", phases=[LoadPhase(users=4, delay=3000, duration_s=1.0)])
    simulation = simulate(fixed(4, 0.25, None), profile, constant_calibration(10.0), record=True, seed=seed,
                          node_cpu=1.0)
    assert max(r.latency_s for r in simulation.requests) == pytest.approx(0.04, abs=1e-6)
    two_cores = simulate(fixed(4, 0.25, None), profile, constant_calibration(10.0), record=True, seed=seed,
                         node_cpu=2.0)
    pods = {r.replica for r in two_cores.requests}
    latencies = [r.latency_s for r in two_cores.requests]
    assert len(pods) > 1 and sum(latencies) / 4 < 0.025  # two cores: requests on two pods run side by side


def test_without_a_limit_the_same_burst_is_served_back_to_back() -> None:
    profile = LoadProfile(name="burst", phases=[LoadPhase(users=20, delay=3000, duration_s=1.0)])
    simulation = simulate(fixed(1, 0.5, None), profile, constant_calibration(10.0), record=True)
    burst = sorted(r.latency_s for r in simulation.requests if r.start == simulation.requests[0].start)
    assert burst == pytest.approx([k * 0.01 for k in range(1, 21)], abs=1e-6)


def test_the_hpa_scales_up_at_the_first_sync_that_sees_a_sample() -> None:
    # 15 requests/s x 10 ms = 0.15 cores on a 0.2-core request: 75 % against a 50 % target, ratio 1.5.
    # metrics-server scrapes at 5, 20, 35 s; the first rate (5..20 s) is usable from 22 s, so the sync at
    # 20 s has no sample and the sync at 35 s scales 1 -> ceil(1.5) = 2.
    spec = DeploymentSpec(requests=ResourceAmounts(cpu=0.2, memory_mb=128), limits=None,
                          autoscaling=AutoscalingSpec(min_replicas=1, max_replicas=4, target_cpu_utilization=50))
    timing = MetricsTiming(offset_s=5.0, delay_s=2.0)
    simulation = simulate(spec, open_profile(15, 60), constant_calibration(10.0), metrics=timing, seed=3,
                          open_loop=True)
    scale_ups = [line for line in simulation.events if "scale to" in line]
    assert scale_ups, simulation.events
    assert scale_ups[0].split()[0] == "35.0"
    assert "scale to 2" in scale_ups[0]
    replicas = [sample.n_replica for sample in simulation.resources]
    assert replicas[:7] == [1] * 7  # the samples at 0..30 s
    assert replicas[-1] == 2


def test_the_local_cluster_scales_at_its_time_compressed_syncs() -> None:
    # Locally the HPA's constants follow the time scale: syncs every 7.5 s at 0.5, starting at 2 s here.
    spec = DeploymentSpec(requests=ResourceAmounts(cpu=0.2, memory_mb=128), limits=None,
                          autoscaling=AutoscalingSpec(min_replicas=1, max_replicas=4, target_cpu_utilization=50))
    profile = open_profile(15, 60).model_copy(update={"time_scale": 0.5})
    simulation = simulate(spec, profile, constant_calibration(10.0), seed=3, open_loop=True,
                          metrics=MetricsTiming(backend="local", offset_s=2.0))
    times = [float(line.split()[0]) for line in simulation.events if "scale to" in line]
    assert times and all((t - 2.0) % 7.5 == pytest.approx(0) for t in times)


def test_pods_beyond_the_capacity_stay_pending_and_count_as_replicas() -> None:
    # 3 replicas of 1 CPU on 2 cores: 2 run, 1 stays Pending; the monitor counts 3 and sums 3 requests.
    spec = fixed(3, 1.0, 1.0, memory_mb=512)
    simulation = simulate(spec, open_profile(20, 30), constant_calibration(10.0), record=True, open_loop=True,
                          capacity=Capacity(cpu_cores=2.0, memory_bytes=8 * 2**30))
    assert {s.n_replica for s in simulation.resources} == {3}
    assert simulation.statistics.cpu_requested_core == pytest.approx(3.0)
    assert simulation.statistics.memory_requested_KB == pytest.approx(3 * 512 * 1024)
    assert len({r.replica for r in simulation.requests}) == 2  # only the running pods serve
    # memory used: only the two pods with a process
    assert simulation.resources[-1].mem_use_KB == pytest.approx(2 * 80 * 1024)


def test_a_memory_limit_under_the_peak_fails_every_request() -> None:
    spec = DeploymentSpec(replicas=1, requests=ResourceAmounts(cpu=0.5, memory_mb=32),
                          limits=ResourceAmounts(cpu=0.5, memory_mb=64))
    simulation = simulate(spec, open_profile(5, 20), constant_calibration(10.0, rss_mib=80), open_loop=True)
    assert simulation.statistics.okay == 0
    assert simulation.statistics.failure_rate == 1.0
    assert any("OOMKilled" in line for line in simulation.events)


def test_closed_loop_users_offer_what_siege_would() -> None:
    # 20 users, d10, 10 ms answers: each user sends about every 5.01 s (mean think 5 s).
    profile = LoadProfile(name="low", phases=[LoadPhase(users=20, delay=10, duration_s=600)])
    simulation = simulate(fixed(1, 1.0, None), profile, constant_calibration(10.0, overhead_ms=2.0), seed=2)
    assert simulation.statistics.transaction_rate == pytest.approx(20 / 5.012, rel=0.05)
    assert simulation.statistics.response_time_s == pytest.approx(0.012, abs=0.004)


def test_the_written_run_folder_analyses_to_the_same_statistics(tmp_path) -> None:
    spec = DeploymentSpec(requests=ResourceAmounts(cpu=0.25, memory_mb=192),
                          autoscaling=AutoscalingSpec(min_replicas=1, max_replicas=3, target_cpu_utilization=70))
    simulation = simulate(spec, load_profile("quick", 0.5), default_calibration(), record=True, seed=4)
    folder = simulation.write(tmp_path / "sim")
    measured = summarize(folder)
    expected = simulation.statistics
    for field in ("memory_requested_KB", "memory_used_KB", "transaction_rate", "response_time_s",
                  "cpu_requested_core", "cpu_used_core", "replica_seconds", "mean_replicas", "max_replicas",
                  "okay", "failed", "failure_rate", "latency_p50_s", "latency_p95_s", "latency_p99_s"):
        assert getattr(measured, field) == pytest.approx(getattr(expected, field), rel=1e-3, abs=1e-4), field
    assert measured.accuracy == expected.accuracy
    for real, simulated in zip(measured.phases, expected.phases, strict=True):
        assert real.mean_replicas == pytest.approx(simulated.mean_replicas)
        assert real.transaction_rate == pytest.approx(simulated.transaction_rate, rel=1e-3)
    assert '"simulated": true' in (folder / "run.json").read_text()


def test_the_same_seed_gives_the_same_simulation() -> None:
    profile = load_profile("quick", 0.5)
    first = simulate(fixed(1, 0.5, 0.5), profile, default_calibration(), seed=9).statistics
    again = simulate(fixed(1, 0.5, 0.5), profile, default_calibration(), seed=9).statistics
    assert first == again


def test_a_compressed_kubernetes_run_scales_down_with_its_hpa_behavior_compressed() -> None:
    """On Kubernetes --time-scale compresses the HPA's behavior (its 300 s scale-down window becomes 30 s) but
    not the controller's 15 s sync: the simulated verification of a compressed run does the same."""
    spec = DeploymentSpec(requests=ResourceAmounts(cpu=0.25, memory_mb=192),
                          autoscaling=AutoscalingSpec(min_replicas=1, max_replicas=3, target_cpu_utilization=50))
    profile = LoadProfile(name="burst", time_scale=0.1, phases=[
        LoadPhase(users=20, delay=0, duration_s=90), LoadPhase(users=1, delay=100, duration_s=120)])
    busy, idle = simulate(spec, profile, constant_calibration(50.0), seed=3).statistics.phases
    assert busy.mean_replicas > 2
    assert idle.mean_replicas < 2  # down within the 120 s idle phase (at 300 s it would have stayed up)
