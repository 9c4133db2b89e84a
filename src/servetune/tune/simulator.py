"""A discrete-event simulation of the whole evaluation protocol for one deployment spec.

Same clock semantics as the real thing (see OPTIMIZER.md):
- load: the profile as load/driver.py runs it (closed loop: every run starts all its users together,
  think time int(U*d + 0.5) whole seconds, one connection per request, 408/5xx failed, requests still in
  flight when a run ends are dropped; open loop: Poisson arrivals at the phase's rate, all awaited);
- Service: each request goes to a ready pod drawn at random (kube-proxy in iptables mode);
- pod: a FIFO queue in front of `workers` workers; a request needs the calibrated CPU time and runs under
  the pod's CFS quota (limit x 100 ms of CPU per 100 ms period, shared by the pod's busy workers); beyond
  the server's backlog (64 per worker) the answer is a fast 503; a one-worker pod runs as many requests at
  once as it has inference threads (the server's thread pool), a request alone with all of them
  (the calibrated parallelism), one among others with one thread;
- node: with `node_cpu`, the cores the pods and the load driver share, slot by 10 ms slot: what the
  requests ahead took of a slot is not there for the next (a fair scheduler at a few ms granularity);
- autoscaler: deploy/hpa.py's `hpa_step` itself, every sync period, fed by metrics-server-like samples
  (`MetricsTiming`); new pods are ready after the calibrated start-to-ready time plus the readiness probe,
  pods that do not fit the capacity stay Pending until others go, a pod whose memory limit is under the
  calibrated peak is killed for memory and never ready;
- monitor: one sample every 5 s (x the profile's time scale, like `servetune run`), Pending and
  Terminating pods counted as replicas like the reference monitor counts them.
Not modelled: a request alone that another joins keeps all its threads (the server hands the next one
a one-thread session, and both share the cores); the node's cores for pods of more than one worker;
request timeouts; network latency beyond the calibrated overhead.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass

from servetune.config import DeploymentSpec, LoadProfile
from servetune.deploy.compressed_hpa import compressed_spec
from servetune.deploy.hpa import HpaMemory, HpaTimings, PodObservation, hpa_step
from servetune.tune.calibration import Calibration
from servetune.tune.capacity import Capacity, CapacityError, parse_capacity
from servetune.tune.simulation import MetricsTiming, RawRun, Simulation, summarize_simulation

__all__ = ["Capacity", "CapacityError", "MetricsTiming", "Simulation", "parse_capacity", "simulate"]

CFS_PERIOD_S = 0.1
NODE_SLOT_S = 0.01  # the node's cores are shared at this granularity (a scheduler turn: a few ms)
PRUNE_EVERY = 4096  # requests between forgetting the CPU accounting of slots and periods gone by
MONITOR_INTERVAL_S = 5.0  # the reference monitor's cadence, times the profile's time scale
MIN_MONITOR_INTERVAL_S = 0.5  # as `servetune run`
BACKLOG_PER_WORKER = 64  # the server's default --backlog
MIB = 1024 * 1024
REFUSED_S = 0.001  # a connection to a Service without ready endpoints fails about this fast
EPSILON = 1e-9

# Event kinds; at equal times the lower kind goes first (a pod is ready before a request picks one).
_READY, _GONE, _DONE, _SEND, _SCRAPE, _SYNC, _SAMPLE = range(7)


class _Pod:
    __slots__ = (
        "cpu",
        "created",
        "deleted_at",
        "finishes",
        "gone",
        "lanes",
        "last",
        "monitor_prev",
        "name",
        "outstanding",
        "period_end",
        "period_used",
        "queue",
        "ready_at",
        "running",
        "scrape_prev",
        "scrapes",
        "served",
        "started",
        "sync_prev",
        "used",
        "version",
    )

    def __init__(self, name: str, created: float, period_offset: float) -> None:
        self.name = name
        self.created = created
        self.started: float | None = None  # None while Pending
        self.ready_at: float | None = None
        self.deleted_at: float | None = None
        self.gone = False
        self.queue: deque = deque()
        self.running: list[list] = []  # [CPU seconds left, request]
        self.last = created  # the time its CPU accounting is up to date
        self.period_end = created + period_offset  # end of the current CFS period
        self.used = 0.0  # CPU seconds used in the current period
        self.cpu = 0.0  # CPU seconds used since it started (requests only)
        self.served = 0
        self.outstanding = 0  # more than one worker: requests sent to it and not answered yet
        self.finishes: list[float] = []  # one worker: a heap of when each request it holds is answered
        self.lanes: list[float] = []  # one worker: when each inference thread is free
        self.period_used: dict[int, float] = {}  # one worker: CPU seconds used per CFS period index
        self.version = 0  # bumps when the next completion changes (older _DONE events are stale)
        self.scrapes: list[tuple[float, float]] = []  # metrics-server samples (scrape time, cores)
        self.scrape_prev: tuple[float, float] | None = None  # (time, cpu) at the previous scrape
        self.sync_prev: tuple[float, float] | None = None  # local: (time, cpu) at the previous HPA sync
        self.monitor_prev: tuple[float, float] | None = None  # local monitor: (time, cpu) at its last sample


@dataclass(frozen=True)
class _Setup:
    """What the simulation needs of the spec and the calibration, resolved once (CPU per request aside:
    it depends on the phase's target)."""

    workers: int
    quota: float | None  # CPU seconds per CFS period, None without a limit
    rate: float  # cores one running request uses (alone in its worker)
    lanes: int  # requests a one-worker pod runs at once: its inference threads
    overhead_s: float
    start_to_ready_s: float
    rss_idle: float
    rss_loaded: float
    oom: bool  # the memory limit is under the calibrated peak: killed for memory
    fits: int | None  # pods the capacity holds (None: all)
    idle_cores: float


def _setup(spec: DeploymentSpec, calibration: Calibration, capacity: Capacity | None, local: bool,
           node_cpu: float | None) -> _Setup:
    workers = 1 if local else spec.workers  # the one-machine cluster runs one worker per replica
    limit = spec.limits.cpu if spec.limits else None
    threads = spec.threads or (max(1, math.floor(limit)) if limit else 2)
    peak = calibration.rss_peak_bytes * workers
    return _Setup(
        workers=workers,
        quota=None if limit is None else limit * CFS_PERIOD_S,
        # a request never runs faster than the node gives its cores (a shared machine: a fair share)
        rate=min(1.0 if threads == 1 else min(float(threads), calibration.parallelism), node_cpu or math.inf),
        lanes=threads if workers == 1 else 1,
        overhead_s=calibration.overhead_ms / 1000,
        start_to_ready_s=max(calibration.start_to_ready_s, calibration.start_cpu_s / (limit or math.inf)),
        rss_idle=float(calibration.rss_idle_bytes),
        rss_loaded=float(calibration.rss_loaded_bytes),
        oom=spec.limits is not None and spec.limits.memory_mb * MIB < peak,
        fits=None if capacity is None else capacity.pods_that_fit(spec),
        idle_cores=calibration.idle_cpu_cores,
    )


def _cpu_quantiles(calibration: Calibration, target: str) -> tuple[float, ...]:
    """CPU seconds per request of `target` at percentiles 0, 5, ..., 100 (else the first target's)."""
    quantiles = calibration.cpu_ms_quantiles.get(target) or next(iter(calibration.cpu_ms_quantiles.values()))
    return tuple(q / 1000 for q in quantiles)


class _Engine:
    """The event loop and the state it changes. One instance per simulation."""

    def __init__(self, spec: DeploymentSpec, profile: LoadProfile, calibration: Calibration,
                 capacity: Capacity | None, seed: int, record: bool, metrics: MetricsTiming,
                 node_cpu: float | None, open_loop: bool) -> None:
        self.open_loop = open_loop
        self.profile = profile
        self.metrics = metrics
        self.local = metrics.backend == "local"
        # On Kubernetes a compressed run's HPA has its behavior compressed, its controller's clocks not.
        self.spec = spec if self.local else compressed_spec(spec, profile.time_scale)[0]
        targets = {phase.target for phase in profile.phases}
        self.setup = _setup(spec, calibration, capacity, self.local, node_cpu)
        self.cpu_quantiles = {t: _cpu_quantiles(calibration, t) for t in targets}
        self.idle_cores = self.setup.idle_cores * self.setup.workers  # a running pod's CPU without requests
        self.rng = random.Random(seed)
        self.node_slot = None if node_cpu is None else node_cpu * NODE_SLOT_S  # CPU seconds per slot
        self.node_used: dict[int, float] = {}  # CPU seconds taken per slot index
        self.shared_rate = min(1.0, node_cpu or math.inf)  # a request among others: one thread
        self.sent = 0
        driver_ms = calibration.load_generator_cpu_ms_per_request or 0.0
        self.driver_cpu_s = driver_ms / 1000 if self.local else 0.0  # the driver shares the node's cores
        self.record = record
        self.heap: list = []
        self.seq = 0
        self.pods: list[_Pod] = []  # every pod not gone yet
        self.endpoints: list[_Pod] = []  # ready pods not being deleted
        self.desired = spec.replicas
        self.pod_count = 0
        self.events: list[str] = []
        scale = profile.time_scale
        self.timings = HpaTimings(time_scale=scale if self.local else 1.0)
        self.hpa_memory = HpaMemory()
        self.monitor_interval = max(MIN_MONITOR_INTERVAL_S, MONITOR_INTERVAL_S * scale)
        self.run_starts: list[float] = []
        self.run_ends: list[float] = []
        self.run_phase: list[int] = []
        start = 0.0
        for phase_index, phase in profile.runs():
            self.run_starts.append(start)
            start += phase.duration_s
            self.run_ends.append(start)
            self.run_phase.append(phase_index)
        self.end = start
        self.run_phases = [profile.phases[index] for index in self.run_phase]
        self.single = self.setup.workers == 1
        self.raw = RawRun(len(self.run_starts), len(profile.phases))
        self.requests: list[tuple] | None = [] if record else None
        self.samples: list[tuple] = []

    # --- the loop ------------------------------------------------------------------------------------

    def push(self, time: float, kind: int, a: object = None, b: object = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (time, kind, self.seq, a, b))

    def run(self) -> None:
        self.start_pods()
        self.start_load()
        spec = self.spec
        offset = self.metrics.offset_s
        if spec.autoscaling is not None:
            self.push(self.rng.random() * self.timings.sync_period if offset is None else offset, _SYNC)
        if not self.local:
            self.push(self.rng.random() * self.metrics.resolution_s if offset is None else offset, _SCRAPE)
        self.push(0.0, _SAMPLE)
        heap = self.heap
        pop = heapq.heappop
        while heap:
            time, kind, _, a, b = pop(heap)
            if kind == _SEND:
                self.send(time, a, b)
            elif kind == _DONE:
                if a.version == b:
                    self.complete(time, a)
            elif kind == _READY:
                self.ready(time, a)
            elif kind == _GONE:
                self.gone(time, a)
            elif kind == _SAMPLE:
                if time < self.end:
                    self.sample(time)
                    self.push(time + self.monitor_interval, _SAMPLE)
            elif kind == _SYNC:
                if time < self.end:
                    self.sync(time)
                    self.push(time + self.timings.sync_period, _SYNC)
            elif kind == _SCRAPE and time < self.end:
                self.scrape(time)
                self.push(time + self.metrics.resolution_s, _SCRAPE)

    # --- load ----------------------------------------------------------------------------------------

    def start_load(self) -> None:
        for run, start in enumerate(self.run_starts):
            phase = self.profile.phases[self.run_phase[run]]
            if self.open_loop:
                self.push(start + self.rng.expovariate(phase.open_loop_rate()), _SEND, run, -1)
            else:
                for user in range(phase.users):
                    self.push(start, _SEND, run, user)

    def send(self, time: float, run: int, user: int) -> None:
        end = self.run_ends[run]
        if time >= end:
            return
        phase = self.run_phases[run]
        if user < 0:  # open loop: the next arrival
            following = time + self.rng.expovariate(phase.open_loop_rate())
            if following < end:
                self.push(following, _SEND, run, -1)
        request = (time, run, user, phase.target)
        self.load_driver_cpu(time)
        endpoints = self.endpoints
        if not endpoints:
            self.respond(time + REFUSED_S, request, 0, None)
            return
        pod = endpoints[int(self.rng.random() * len(endpoints))]
        setup = self.setup
        if self.holding(pod, time) > (BACKLOG_PER_WORKER + setup.lanes) * setup.workers:
            self.respond(time + setup.overhead_s, request, 503, pod)
            return
        if self.single:
            # One worker: its threads take requests first come first served, so each one's end is known
            # when it arrives, and so is the answer's (no event needed for it).
            lanes = pod.lanes
            if len(lanes) == 1:
                lane, start, alone = 0, max(lanes[0], time), True
            else:
                lane = min(range(len(lanes)), key=lanes.__getitem__)
                start = max(lanes[lane], time)
                alone = all(free <= start for index, free in enumerate(lanes) if index != lane)
            work = self.work(phase.target)
            if alone and self.node_slot is not None:
                # its threads get the node's other cores only if nothing else runs there
                alone = self.node_used.get(int(start / NODE_SLOT_S + EPSILON), 0.0) <= EPSILON
            finish = self.finish_alone(pod, start, work, setup.rate if alone else self.shared_rate)
            lanes[lane] = finish
            pod.cpu += work
            pod.served += 1
            heapq.heappush(pod.finishes, finish + setup.overhead_s)
            self.respond(finish + setup.overhead_s, request, 200, pod)
            self.sent += 1
            if self.sent % PRUNE_EVERY == 0:
                self.forget_before(time)
            return
        pod.outstanding += 1
        if len(pod.running) < setup.workers:
            self.advance(pod, time)
            pod.running.append([self.work(phase.target), request])
            self.reschedule(pod, time)
        else:
            pod.queue.append(request)

    def finish_alone(self, pod: _Pod, start: float, work: float, rate: float) -> float:
        """When a request needing `work` CPU seconds, started at `start` at `rate` cores on a one-worker pod,
        is done.

        Each 100 ms period the pod may use its quota, and each 10 ms slot the node what the requests ahead
        left of it (`node_cpu`): first come first served, requests in the order they start.
        """
        quota = self.setup.quota
        node = self.node_slot
        if node is None and (quota is None or quota >= CFS_PERIOD_S * max(rate, self.setup.lanes)):
            return start + work / rate  # nothing binds one request
        period_used, node_used = pod.period_used, self.node_used
        now = start
        while True:
            period = int(now / CFS_PERIOD_S + EPSILON)
            end = (period + 1) * CFS_PERIOD_S
            left = math.inf if quota is None else quota - period_used.get(period, 0.0)
            slot = -1
            if node is not None:
                slot = int(now / NODE_SLOT_S + EPSILON)
                slot_end = (slot + 1) * NODE_SLOT_S
                end = min(end, slot_end)
                node_left = node - node_used.get(slot, 0.0)
                left = min(left, node_left)
            if left <= EPSILON or now >= end - EPSILON:
                now = max(now, end)
                continue
            step = end - now
            if left < step * rate:
                step = left / rate
            if work <= step * rate:  # done within this step
                if quota is not None:
                    period_used[period] = period_used.get(period, 0.0) + work
                if node is not None:
                    node_used[slot] = node_used.get(slot, 0.0) + work
                return now + work / rate
            spent = step * rate
            if quota is not None:
                period_used[period] = period_used.get(period, 0.0) + spent
            if node is not None:
                node_used[slot] = node_used.get(slot, 0.0) + spent
            work -= spent
            now += step

    def forget_before(self, time: float) -> None:
        """Drop the CPU accounting of slots and periods before `time`: no request starts before now."""
        slot, period = int(time / NODE_SLOT_S) - 1, int(time / CFS_PERIOD_S) - 1
        self.node_used = {k: v for k, v in self.node_used.items() if k >= slot}
        for pod in self.pods:
            pod.period_used = {k: v for k, v in pod.period_used.items() if k >= period}

    def load_driver_cpu(self, time: float) -> None:
        """The load driver's own CPU for one request, taken from the node's cores (local backend)."""
        if self.node_slot is None or not self.driver_cpu_s:
            return
        slot = int(time / NODE_SLOT_S + EPSILON)
        cost = self.driver_cpu_s
        while cost > EPSILON:  # what the slot has no room for runs in the next ones
            used = self.node_used.get(slot, 0.0)
            taken = min(cost, max(0.0, self.node_slot - used))
            if taken:
                self.node_used[slot] = used + taken
                cost -= taken
            slot += 1

    def work(self, target: str) -> float:
        quantiles = self.cpu_quantiles[target]
        position = self.rng.random() * (len(quantiles) - 1)
        index = int(position)
        low = quantiles[index]
        return low + (quantiles[index + 1] - low) * (position - index)

    def holding(self, pod: _Pod, time: float) -> int:
        """Requests the pod holds at `time` (in service or waiting)."""
        if not self.single:
            return pod.outstanding
        finishes = pod.finishes
        while finishes and finishes[0] <= time:
            heapq.heappop(finishes)
        return len(finishes)

    def respond(self, time: float, request: tuple, status: int, pod: _Pod | None) -> None:
        """The client has the answer at `time`: count it (unless its run is over) and think."""
        sent, run, user, _ = request
        end = self.run_ends[run]
        if time > end and user >= 0:
            return  # siege cancels a request still in flight when its run ends
        latency = time - sent
        self.raw.add(run, self.run_phase[run], status, latency)
        if self.requests is not None:
            self.requests.append((sent, latency, status, run, pod.name if pod else ""))
        if user >= 0:
            delay = self.run_phases[run].delay
            following = time + think_time(self.rng.random(), delay)
            if following < end:
                self.push(following, _SEND, run, user)

    # --- a pod's CPU under its quota -----------------------------------------------------------------

    def advance(self, pod: _Pod, time: float) -> None:
        """Bring the pod's running requests and its CFS accounting up to `time` (one worker: always are)."""
        last = pod.last
        if time <= last or self.single:
            return
        running = pod.running
        if not running:
            if time >= pod.period_end:
                pod.period_end += math.floor((time - pod.period_end) / CFS_PERIOD_S + 1) * CFS_PERIOD_S
                pod.used = 0.0
            pod.last = time
            return
        quota = self.setup.quota
        rate = self.setup.rate
        total_rate = rate * len(running)
        while last < time - EPSILON:
            if last >= pod.period_end - EPSILON:
                pod.period_end += math.floor((last - pod.period_end) / CFS_PERIOD_S + 1) * CFS_PERIOD_S
                pod.used = 0.0
            segment_end = min(time, pod.period_end)
            if quota is not None:
                left = quota - pod.used
                if left <= EPSILON:
                    last = segment_end
                    continue
                segment_end = min(segment_end, last + left / total_rate)
            step = segment_end - last
            for item in running:
                item[0] -= step * rate
            pod.used += step * total_rate
            pod.cpu += step * total_rate
            last = segment_end
        pod.last = time

    def next_completion(self, pod: _Pod) -> float:
        """When the running request with the least CPU left finishes, at the current share of the quota."""
        running = pod.running
        rate = self.setup.rate
        total_rate = rate * len(running)
        quota = self.setup.quota
        left_work = min(item[0] for item in running)
        now = pod.last
        if quota is None:
            return now + max(left_work, 0.0) / rate
        used = pod.used
        period_end = pod.period_end
        while True:
            if now >= period_end - EPSILON:
                period_end += math.floor((now - period_end) / CFS_PERIOD_S + 1) * CFS_PERIOD_S
                used = 0.0
            need = max(left_work, 0.0) / rate
            left = quota - used
            if left <= EPSILON:
                now = period_end
                continue
            step = min(period_end - now, left / total_rate)
            if need <= step + EPSILON:
                return now + need
            left_work -= step * rate
            used += step * total_rate
            now += step

    def reschedule(self, pod: _Pod, time: float) -> None:
        pod.version += 1
        if pod.running:
            self.push(self.next_completion(pod), _DONE, pod, pod.version)

    def complete(self, time: float, pod: _Pod) -> None:
        self.advance(pod, time)
        running = pod.running
        least = min(item[0] for item in running)
        finished = [item for item in running if item[0] <= max(least, EPSILON)]
        pod.running = [item for item in running if item[0] > max(least, EPSILON)]
        pod.served += len(finished)
        pod.outstanding -= len(finished)
        for item in finished:
            request = item[1]
            self.respond(time + self.setup.overhead_s, request, 200, pod)
        while pod.queue and len(pod.running) < self.setup.workers:
            request = pod.queue.popleft()
            pod.running.append([self.work(request[3]), request])
        self.reschedule(pod, time)
        if pod.deleted_at is not None and not pod.running:
            self.push(max(time, pod.deleted_at + self.drain_s()), _GONE, pod)

    # --- pods: create, ready, delete -----------------------------------------------------------------

    def new_pod(self, time: float) -> _Pod:
        self.pod_count += 1
        pod = _Pod(f"{self.spec.name}-{self.pod_count}", time, self.rng.random() * CFS_PERIOD_S)
        pod.lanes = [time] * self.setup.lanes
        self.pods.append(pod)
        return pod

    def start_pods(self) -> None:
        """The pods `servetune run` applied and waited for before the load: ready at t=0."""
        ready_at = -1.0
        for _ in range(self.spec.replicas):
            pod = self.new_pod(ready_at - self.setup.start_to_ready_s)
            if not self.schedule(pod, pod.created, at_start=True):
                continue
            pod.monitor_prev = (pod.started, 0.0)
            pod.sync_prev = (ready_at, 0.0)

    def schedule(self, pod: _Pod, time: float, at_start: bool = False) -> bool:
        """Start `pod` if the capacity has room for it; False: it stays Pending."""
        fits = self.setup.fits
        if fits is not None and sum(1 for p in self.pods if p.started is not None) >= fits:
            return False
        pod.started = time
        pod.last = time
        pod.monitor_prev = (time, 0.0)
        if self.setup.oom:
            self.events.append(f"{time:9.1f} {pod.name} OOMKilled: memory limit under the calibrated peak RSS")
            return True
        if at_start:
            self.ready(time, pod)
            pod.ready_at = -1.0
        else:
            probe = self.spec.readiness_probe.period_seconds
            self.push(time + self.setup.start_to_ready_s + self.rng.random() * probe, _READY, pod)
        return True

    def ready(self, time: float, pod: _Pod) -> None:
        if pod.deleted_at is not None or pod.gone:
            return
        pod.ready_at = time
        self.endpoints.append(pod)

    def drain_s(self) -> float:
        return 1.0 if self.local else float(self.spec.pre_stop_seconds)

    def scale_to(self, time: float, replicas: int) -> None:
        active = [p for p in self.pods if p.deleted_at is None]
        self.desired = replicas
        for _ in range(replicas - len(active)):
            pod = self.new_pod(time)
            self.schedule(pod, time)
        if replicas >= len(active):
            return
        # A ReplicaSet deletes Pending, then unready, then the newest pods; gunicorn stops its oldest worker.
        def rank(pod: _Pod) -> tuple:
            age = pod.created if self.local else -pod.created
            return (pod.started is not None, pod.ready_at is not None, age)
        for pod in sorted(active, key=rank)[: len(active) - replicas]:
            self.delete(time, pod)

    def delete(self, time: float, pod: _Pod) -> None:
        pod.deleted_at = time
        if pod in self.endpoints:
            self.endpoints.remove(pod)
        if pod.started is None:
            self.gone(time, pod)
            return
        if not self.holding(pod, time):
            self.push(time + self.drain_s(), _GONE, pod)
        elif self.single:
            self.push(max(time + self.drain_s(), max(pod.finishes)), _GONE, pod)

    def gone(self, time: float, pod: _Pod) -> None:
        if pod.gone:
            return
        if self.holding(pod, time):
            return  # still draining: the last answer pushes _GONE again
        pod.gone = True
        self.pods.remove(pod)
        for waiting in [p for p in self.pods if p.started is None]:
            if not self.schedule(waiting, time):
                break

    # --- metrics, autoscaler, monitor ----------------------------------------------------------------

    def scrape(self, time: float) -> None:
        """metrics-server: each running pod's CPU rate since the previous scrape."""
        for pod in self.pods:
            if pod.started is None or self.setup.oom:
                continue
            self.advance(pod, time)
            if pod.scrape_prev is not None:
                then, cpu = pod.scrape_prev
                cores = (pod.cpu - cpu) / (time - then) + self.idle_cores
                pod.scrapes.append((time, cores))
                del pod.scrapes[:-4]
            pod.scrape_prev = (time, pod.cpu)

    def visible_sample(self, pod: _Pod, time: float) -> tuple[float, float] | None:
        for scraped, cores in reversed(pod.scrapes):
            if scraped + self.metrics.delay_s <= time:
                return scraped, cores
        return None

    def observe(self, pod: _Pod, time: float, request_milli: int) -> PodObservation:
        if pod.started is None:
            return PodObservation(name=pod.name, cpu_request_milli=request_milli, phase="Pending")
        cores: float | None
        if self.local:
            self.advance(pod, time)
            stamp, window = time, self.timings.sync_period
            if pod.sync_prev is None:
                cores = None  # the local cluster's CPU meter has no earlier reading of a new replica
            else:
                then, cpu = pod.sync_prev
                cores = (pod.cpu - cpu) / max(time - then, EPSILON) + self.idle_cores
            pod.sync_prev = (time, pod.cpu)
        else:
            sample = self.visible_sample(pod, time)
            stamp, window = (sample[0], self.metrics.resolution_s) if sample else (0.0, 0.0)
            cores = sample[1] if sample else None
        if self.setup.oom:
            cores = None
        return PodObservation(
            name=pod.name, cpu_request_milli=request_milli, phase="Running",
            deleting=pod.deleted_at is not None, start_time=pod.started, ready=pod.ready_at is not None,
            ready_transition_time=pod.ready_at if pod.ready_at is not None else pod.started,
            cpu_usage_milli=None if cores is None else int(cores * 1000),
            metric_timestamp=stamp, metric_window_s=window,
        )

    def sync(self, time: float) -> None:
        autoscaling = self.spec.autoscaling
        assert autoscaling is not None
        request_milli = round(self.spec.requests.cpu * 1000)
        pods = [self.observe(pod, time, request_milli) for pod in self.pods]
        decision = hpa_step(autoscaling, self.desired, pods, self.hpa_memory, time, self.timings)
        self.hpa_memory = decision.memory
        if decision.rescale:
            utilization = "-" if decision.utilization is None else f"{decision.utilization}%"
            self.events.append(
                f"{time:9.1f} replicas {self.desired}, cpu {utilization} of request -> scale to "
                f"{decision.desired_replicas} ({decision.reason})"
            )
            self.scale_to(time, decision.desired_replicas)

    def sample(self, time: float) -> None:
        """The monitor's row: every pod listed (Pending and Terminating too), usage of the running ones."""
        setup = self.setup
        count = len(self.pods)
        cpu_used = 0.0
        memory_used = 0.0
        for pod in self.pods:
            if pod.started is None:
                continue
            if self.local:
                self.advance(pod, time)
                then, cpu = pod.monitor_prev or (pod.started, 0.0)
                if time > then:
                    cpu_used += (pod.cpu - cpu) / (time - then) + self.idle_cores
                pod.monitor_prev = (time, pod.cpu)
            else:
                sample = self.visible_sample(pod, time)
                cpu_used += sample[1] if sample else 0.0
            if not setup.oom:
                memory_used += setup.workers * (setup.rss_loaded if pod.served else setup.rss_idle)
        self.samples.append((time, count, cpu_used, memory_used))


def think_time(u: float, delay: float) -> float:
    """load/driver.py's think_time for a uniform draw `u` (siege: whole seconds for delay >= 1)."""
    if delay >= 1:
        return float(int(u * delay + 0.5))
    if delay >= 0.001:
        return int(u * delay * 1_000_000 + 0.0005) / 1_000_000
    return 0.0


def simulate(
    spec: DeploymentSpec,
    profile: LoadProfile,
    calibration: Calibration,
    *,
    capacity: Capacity | None = None,
    seed: int = 0,
    record: bool = False,
    metrics: MetricsTiming | None = None,
    node_cpu: float | None = None,
    open_loop: bool = False,
) -> Simulation:
    """Simulate `spec` under `profile` (as compressed: profile.time_scale) with `calibration`'s figures.

    `capacity`: the cluster's allocatable resources (None: every pod fits). `record`: keep every request
    (requests.csv). `metrics`: how usage reaches the HPA (default: Kubernetes' metrics-server); with
    MetricsTiming(backend="local") the autoscaler's time constants are scaled by profile.time_scale as
    `servetune run --backend local` does (on Kubernetes only the HPA's behavior is, as `servetune run --backend
    kubernetes` applies it: deploy/compressed_hpa.py), each replica is one worker and the load driver's CPU per request
    (from the calibration) comes out of the node's cores. `node_cpu`: the cores the pods (one node) really
    get, all quotas together, e.g. a shared machine's cores minus what other processes use; None: no limit
    beyond each pod's quota (one-worker pods only; more workers per pod are limited by their quota alone).
    `open_loop`: every phase as Poisson arrivals at its rate (`servetune loadtest --mode open`), else
    siege's closed loop (a phase's `rate` is then unused, as in the load driver).
    Statistics are those `servetune analyze` computes from the run folder `Simulation.write` writes.
    """
    engine = _Engine(spec, profile, calibration, capacity, seed, record, metrics or MetricsTiming(), node_cpu,
                     open_loop)
    engine.run()
    return summarize_simulation(
        spec, profile, calibration, engine.raw, engine.samples, engine.monitor_interval,
        engine.run_starts, engine.run_ends, engine.requests, engine.events, seed,
    )
