"""What the autoscaler and the monitor see: metrics-server's scrapes (Kubernetes) or the one-machine
cluster's own CPU meter, the HPA (deploy/hpa.py's `hpa_step` itself, every sync period), and the monitor's
samples (every pod listed, Pending and Terminating too, usage of the running ones)."""

from __future__ import annotations

from servetune.config import DeploymentSpec
from servetune.deploy.hpa import HpaMemory, HpaTimings, PodObservation, hpa_step
from servetune.sim.pods import Cluster, Pod
from servetune.sim.simulation import MetricsTiming

EPSILON = 1e-9


class Metrics:
    def __init__(self, cluster: Cluster, spec: DeploymentSpec, timing: MetricsTiming, hpa: HpaTimings,
                 idle_cores: float, rss: tuple[float, float]) -> None:
        self.cluster, self.spec, self.timing, self.hpa = cluster, spec, timing, hpa
        self.local = timing.backend == "local"
        self.idle_cores = idle_cores  # a running pod's CPU without requests
        self.rss_idle, self.rss_loaded = rss  # one pod's memory before and after it served
        self.memory = HpaMemory()
        self.samples: list[tuple[float, int, float, float]] = []

    def _cpu(self, pod: Pod, now: float) -> float:
        return self.cluster.cpu.read(pod.group, now)

    def scrape(self, now: float) -> None:
        """metrics-server: each running pod's CPU rate since the previous scrape."""
        if self.cluster.shape.oom:
            return
        for pod in self.cluster.pods:
            if pod.started is None:
                continue
            cpu = self._cpu(pod, now)
            if pod.scrape_prev is not None:
                then, before = pod.scrape_prev
                pod.scrapes.append((now, (cpu - before) / (now - then) + self.idle_cores))
                del pod.scrapes[:-4]
            pod.scrape_prev = (now, cpu)

    def visible(self, pod: Pod, now: float) -> tuple[float, float] | None:
        for scraped, cores in reversed(pod.scrapes):
            if scraped + self.timing.delay_s <= now:
                return scraped, cores
        return None

    def observe(self, pod: Pod, now: float, request_milli: int) -> PodObservation:
        if pod.started is None:
            return PodObservation(name=pod.name, cpu_request_milli=request_milli, phase="Pending")
        cores: float | None
        if self.local:
            cpu = self._cpu(pod, now)
            stamp, window = now, self.hpa.sync_period
            cores = None  # the local cluster's CPU meter has no earlier reading of a new replica
            if pod.sync_prev is not None:
                then, before = pod.sync_prev
                cores = (cpu - before) / max(now - then, EPSILON) + self.idle_cores
            pod.sync_prev = (now, cpu)
        else:
            sample = self.visible(pod, now)
            stamp, window = (sample[0], self.timing.resolution_s) if sample else (0.0, 0.0)
            cores = sample[1] if sample else None
        if self.cluster.shape.oom:
            cores = None
        return PodObservation(
            name=pod.name, cpu_request_milli=request_milli, phase="Running",
            deleting=pod.deleted_at is not None, start_time=pod.started, ready=pod.ready_at is not None,
            ready_transition_time=pod.ready_at if pod.ready_at is not None else pod.started,
            cpu_usage_milli=None if cores is None else int(cores * 1000),
            metric_timestamp=stamp, metric_window_s=window,
        )

    def sync(self, now: float) -> None:
        autoscaling = self.spec.autoscaling
        assert autoscaling is not None
        cluster = self.cluster
        request_milli = round(self.spec.requests.cpu * 1000)
        pods = [self.observe(pod, now, request_milli) for pod in cluster.pods]
        decision = hpa_step(autoscaling, cluster.desired, pods, self.memory, now, self.hpa)
        self.memory = decision.memory
        if decision.rescale:
            utilization = "-" if decision.utilization is None else f"{decision.utilization}%"
            cluster.events.append(
                f"{now:9.1f} replicas {cluster.desired}, cpu {utilization} of request -> scale to "
                f"{decision.desired_replicas} ({decision.reason})"
            )
            cluster.scale_to(now, decision.desired_replicas, self.local)

    def sample(self, now: float) -> None:
        """The monitor's row: replicas, CPU used and memory used."""
        cpu_used = memory_used = 0.0
        workers = self.cluster.shape.workers
        for pod in self.cluster.pods:
            if pod.started is None:
                continue
            if self.local:
                cpu = self._cpu(pod, now)
                then, before = pod.monitor_prev or (pod.started, 0.0)
                if now > then:
                    cpu_used += (cpu - before) / (now - then) + self.idle_cores
                pod.monitor_prev = (now, cpu)
            else:
                sample = self.visible(pod, now)
                cpu_used += sample[1] if sample else 0.0
            if not self.cluster.shape.oom:
                memory_used += workers * (self.rss_loaded if pod.served else self.rss_idle)
        self.samples.append((now, len(self.cluster.pods), cpu_used, memory_used))
