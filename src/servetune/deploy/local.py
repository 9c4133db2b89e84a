"""The one-machine cluster: replicas are gunicorn workers on one port, scaled by the Kubernetes HPA rule.

- One gunicorn master with uvicorn workers (`servetune.serve.app:app_from_env()`); each worker is a replica.
  Replicas are added and removed with gunicorn's own signals, TTIN and TTOU. gunicorn removes its oldest
  worker on TTOU (a ReplicaSet would remove the newest first): that replica shows as Terminating until it
  has drained and exited.
- Readiness: a worker writes `<workdir>/ready/<pid>` once its model is loaded and warmed up.
- Node capacity: replicas fit while the sum of their requests fits this machine's allocatable CPU (the
  cgroup CPU quota, else the CPUs this process may run on) and memory (the cgroup limit, else physical
  memory). A replica beyond that stays Pending: no process is started for it, and, like a Pending pod that
  the reference monitor lists, it is counted in n_replica and in the requested and limit sums, with no usage.
  A replica asked for but whose worker has not appeared yet is Pending too (a pod being created).
- Limits: each worker joins its own cgroup (v1 or v2, host/cgroups.py). Where that is impossible the
  cluster runs anyway and the state and the output say "limits not enforced".
- Restarts: a worker that exits without being asked to (killed for memory, crashed) is replaced by gunicorn;
  each such exit counts as one restart, with its reason (`OOMKilled` from the replica's memory cgroup, else
  the signal or exit code), and the replacement waits out the kubelet's back-off (10 s doubling to 5 min,
  x time_scale; deploy/backoff.py, deploy/restarts.py) in `CrashLoopBackOff`.
- A memory limit below what the model measurably needs (the warm-up's peak RSS) fails at once.
- Autoscaling: every sync period (15 s x time_scale) the CPU of each replica over the period and its
  readiness go through deploy/hpa.py; the answer is applied with TTIN/TTOU.
- Labels (spec `labels`): the replicas share `<workdir>/labels.db` (SQLite), or with `database: postgresql`
  a PostgreSQL server the cluster starts for itself (deploy/local_postgres.py) and stops with them.
- State: `<workdir>/state.json` (config.LocalClusterState), rewritten atomically every second; the local
  resource monitor (monitor/local.py) reads it.
"""

from __future__ import annotations

import atexit
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import psutil

from servetune.config import DeploymentSpec, LocalClusterState, LocalReplica
from servetune.deploy.backoff import Backoff, BackoffTimings, after_exit
from servetune.deploy.capacity import MIB, Capacity
from servetune.deploy.footprint import measure_footprint
from servetune.deploy.hpa import HpaMemory, HpaTimings, PodObservation, hpa_step
from servetune.deploy.local_postgres import LocalPostgres
from servetune.deploy.restarts import RESTARTS_DIR_VAR, exit_reason, read_exit_record, write_start_permit
from servetune.errors import FailedError
from servetune.host.cgroups import (
    CGROUP_ROOT,
    ENV_VAR,
    ReplicaCgroups,
    ReplicaLimits,
    allocatable,
    create_replica_cgroups,
    in_replica_cgroup,
)
from servetune.host.schedule import every
from servetune.host.usage import CpuMeter
from servetune.serve.settings import ServerSettings, label_fields

STATE_FILE = "state.json"
LABELS_FILE = "labels.db"
LOG_FILE = "gunicorn.log"
SIGNAL_GAP_S = 0.05  # between two signals to the master: two pending signals of one kind merge into one
TICK_S = 0.5


class LocalClusterError(FailedError):
    """The cluster cannot start or has failed; the message says why (with gunicorn's last log lines)."""


@dataclass
class _Worker:
    pid: int
    started_at: float
    terminating: bool = False
    ready_at: float | None = None
    starts_at: float = 0.0  # its start permit: later than started_at while it backs off
    gone_since: float | None = None  # reaped, its exit not yet accounted for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_state(path: Path, state: LocalClusterState) -> None:
    """Replace the state file in one step, so a reader never sees half of it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(state.model_dump_json(indent=1))
    os.replace(temporary, path)


def read_state(path: Path) -> LocalClusterState:
    return LocalClusterState.model_validate_json(Path(path).read_text())


def _die_with_parent() -> None:
    # The master gets SIGTERM if the process that started it dies, so no replica outlives a crashed run.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def model_footprint(model_path: Path) -> int:
    """The model's peak RSS as a replica (bytes), loading it once in a fresh process; a clear error for a
    missing file or one that cannot be loaded."""
    if not model_path.is_file():
        raise LocalClusterError(f"{model_path}: no such model file")
    try:
        return measure_footprint(model_path)
    except ValueError as error:
        raise LocalClusterError(f"{model_path}: cannot be loaded ({error})") from None


class LocalCluster:
    """Replicas of one DeploymentSpec on this machine. `start()`, `wait_ready()`, `stop()`, or `with`."""

    def __init__(
        self,
        spec: DeploymentSpec,
        model_path: str | Path,
        port: int = 0,
        workdir: str | Path = ".",
        time_scale: float = 1.0,
        sample_image: str | Path | None = None,
        on_event: Callable[[str], None] | None = None,
        app: str = "servetune.serve.app:app_from_env()",
        cgroup_root: Path = CGROUP_ROOT,
        node: tuple[float, int] | None = None,
        footprint_bytes: int | None = None,
    ) -> None:
        """`node`: allocatable (CPU cores, memory bytes) [default: this machine's, see cgroups.allocatable];
        `footprint_bytes`: the model's footprint as a replica, when the caller has measured it already
        (deploy/footprint.py; the cluster then does not load the model once more before the replicas)."""
        if spec.replicas < 1:
            raise LocalClusterError("deployment replicas is 0: the one-machine cluster needs at least 1")
        self.spec = spec
        self.model_path = Path(model_path)
        self.port = port or free_port()
        self.workdir = Path(workdir)
        self.timings = HpaTimings(time_scale=time_scale)
        self.sample_image = sample_image
        self.on_event = on_event or (lambda line: None)
        self.app = app
        self.cgroup_root = Path(cgroup_root)
        self.state_path = self.workdir / STATE_FILE
        self.log_path = self.workdir / LOG_FILE
        self.ready_dir = self.workdir / "ready"
        self.restarts_dir = self.workdir / "replicas"
        self.labels_db = str(self.workdir.resolve() / LABELS_FILE) if spec.labels else None
        self.postgres: LocalPostgres | None = None

        self.cpu_request = spec.requests.cpu
        self.memory_request = spec.requests.memory_mb * MIB
        self.limits = ReplicaLimits(
            spec.limits.cpu if spec.limits else None,
            spec.limits.memory_mb * MIB if spec.limits else None,
        )
        node_cpu, node_memory = node or allocatable()
        self.capacity = Capacity(node_cpu, node_memory).pods_that_fit(spec)
        self.node = (node_cpu, node_memory)

        self.desired = spec.replicas
        self.restart_reasons: dict[str, int] = {}  # reason -> exits unasked
        self.footprint_bytes = footprint_bytes
        self._backoff = Backoff()
        self._backoff_timings = BackoffTimings(time_scale=time_scale)
        self._replacements_due = 0  # workers still to come that replace ones that exited unasked
        self.error: str | None = None
        self.limits_note = ""
        self.limits_enforced = False
        self._cgroups: ReplicaCgroups | None = None
        self._process: subprocess.Popen | None = None
        self._log_file = None
        self._gunicorn_workers = 0  # gunicorn's own target count (its num_workers)
        self._workers: dict[int, _Worker] = {}
        self._pending_since: list[float] = []
        self._hpa_memory = HpaMemory()
        self._cpu = CpuMeter()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_utilization: int | None = None

    # --- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.capacity < 1:
            raise LocalClusterError(
                f"one replica requests {self.cpu_request} CPU and {self.spec.requests.memory_mb} MiB; this "
                f"machine has {self.node[0]:g} CPU and {self.node[1] // MIB} MiB allocatable: it would stay Pending"
            )
        if self.spec.workers != 1:
            self.on_event(f"note: workers={self.spec.workers} ignored: each replica is one worker here")
        self._warm_up()
        self.workdir.mkdir(parents=True, exist_ok=True)
        for folder in (self.ready_dir, self.restarts_dir):
            folder.mkdir(exist_ok=True)
            for stale in folder.iterdir():
                stale.unlink(missing_ok=True)
        self._cgroups, self.limits_note = create_replica_cgroups(
            f"{os.getpid()}-{self.port}", self.limits, self.cgroup_root
        )
        self.limits_enforced = self._cgroups is not None and (
            self.limits.cpu_cores is None or self._cgroups.cpu_parent is not None
        ) and (self.limits.memory_bytes is None or self._cgroups.memory_parent is not None)
        self.on_event(self.limits_note)

        self._start_label_store()
        self._gunicorn_workers = min(self.desired, self.capacity)
        env = dict(os.environ)
        env.update(self._server_env())
        command = [
            sys.executable, "-m", "gunicorn",
            "-c", "python:servetune.deploy.gunicorn_settings",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self._gunicorn_workers),
            "--graceful-timeout", str(self.spec.termination_grace_period_seconds),
            "--timeout", "120",
            "--log-level", "info",
            self.app,
        ]
        self._log_file = self.log_path.open("ab")
        self._process = subprocess.Popen(
            command, env=env, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent,  # noqa: PLW1509 (one prctl call)
        )
        atexit.register(self.stop)
        self._write_state()
        self._thread = threading.Thread(target=self._run, name="local-cluster", daemon=True)
        self._thread.start()

    def _start_label_store(self) -> None:
        labels = self.spec.labels
        if labels is None or labels.database != "postgresql":
            return
        # As root the data folder lives in the temporary directory, where the server's user can reach it.
        folder = None if os.geteuid() == 0 else self.workdir / "postgres"
        self.postgres = LocalPostgres(folder)
        self.postgres.create()
        self.postgres.start()
        self.labels_db = self.postgres.url
        self.on_event(f"label store: PostgreSQL on 127.0.0.1:{self.postgres.port}, data in {self.postgres.folder}")

    def _server_env(self) -> dict[str, str]:
        threads = self.spec.threads
        if threads is None and self.limits.cpu_cores is not None:
            threads = max(1, math.floor(self.limits.cpu_cores))  # never more threads than cores granted
        settings = ServerSettings(
            model_path=str(self.model_path), ready_dir=str(self.ready_dir), threads=threads,
            sample_image=str(self.sample_image) if self.sample_image is not None else None,
            labels_db=self.labels_db, **label_fields(self.spec.labels),
        )
        env = settings.to_env()
        env[RESTARTS_DIR_VAR] = str(self.restarts_dir)
        if self._cgroups is not None:
            env[ENV_VAR] = self._cgroups.to_env()
        return env

    def _warm_up(self) -> None:
        """Load the model once before any replica starts: a broken artifact fails here, with its reason,
        instead of in a loop of dying workers, and the files are in the page cache for the replicas. A
        memory limit below what loading and warming up the model took fails here too."""
        if self.footprint_bytes is None:
            self.footprint_bytes = model_footprint(self.model_path)
        limit = self.limits.memory_bytes
        if limit is not None and limit < self.footprint_bytes:
            raise LocalClusterError(
                f"limits.memory_mb {limit // MIB} is below the model's measured footprint: loading and warming "
                f"up {self.model_path.name} took {math.ceil(self.footprint_bytes / MIB)} MiB, so every replica "
                f"would be killed for memory as it starts; raise limits.memory_mb above that"
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until every replica that fits the machine is ready (LocalClusterError on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.error:
                    raise LocalClusterError(self.error)
                wanted = min(self.desired, self.capacity)
                ready = sum(1 for w in self._workers.values() if w.ready_at and not w.terminating)
            if ready >= wanted:
                return
            time.sleep(0.1)
        crashes = ""
        if self.restarts:
            crashes = f": {self.restarts} restarts ({self.reasons_text()}), replicas in CrashLoopBackOff"
        raise LocalClusterError(f"replicas not ready after {timeout:g} s{crashes}\n{self.log_tail()}")

    @property
    def restarts(self) -> int:
        """Exits unasked so far (every one has its reason counted)."""
        with self._lock:
            return sum(self.restart_reasons.values())

    def reasons_text(self) -> str:
        with self._lock:
            return ", ".join(f"{reason} x{count}" for reason, count in sorted(self.restart_reasons.items()))

    def stop(self) -> None:
        """SIGTERM to the master (workers drain and exit), wait, then make sure nothing is left."""
        atexit.unregister(self.stop)
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        process = self._process
        if process is not None:
            if process.poll() is None:
                try:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=self.spec.termination_grace_period_seconds + 10)
                except subprocess.TimeoutExpired:
                    pass
            # Anything of the group still alive (a stuck master or worker) is killed.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self._process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._cgroups is not None:
            self._cgroups.remove_all()
        if self.postgres is not None:
            try:
                self.postgres.stop()
            except FailedError as error:
                self.on_event(f"label store: {error}")
            self.postgres = None
        with self._lock:
            self._workers.clear()
            self._pending_since.clear()
            self.desired = 0
            if self.state_path.parent.is_dir():
                self._write_state()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # --- the control loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        next_sync = time.monotonic() + self.timings.sync_period
        last_state = 0.0
        for due in every(TICK_S, self._stop):
            try:
                self._refresh()
                if self.spec.autoscaling is not None and due >= next_sync and not self.error:
                    next_sync += self.timings.sync_period
                    self._sync()
                if due - last_state >= 1.0 - 1e-6:
                    last_state = due
                    with self._lock:
                        self._write_state()
            except Exception as error:  # noqa: BLE001 - the loop must survive a bad sample; the run shows what went wrong
                self.on_event(f"control loop: {error!r}")
            if self.error:
                self.on_event(self.error)
                with self._lock:
                    self._write_state()
                return

    def _refresh(self) -> None:
        """Find the master's workers, their readiness, and the ones that died unasked (restarts)."""
        assert self._process is not None
        code = self._process.poll()
        if code is not None:
            self.error = f"gunicorn exited with code {code}\n{self.log_tail()}"
            return
        try:
            children = psutil.Process(self._process.pid).children()
        except psutil.Error:
            return
        alive, present = {}, set()
        for child in children:
            try:
                present.add(child.pid)  # a zombie is not reaped yet: its exit record is still to come
                if child.status() != psutil.STATUS_ZOMBIE:
                    alive[child.pid] = child.create_time()
            except psutil.Error:
                continue
        now = time.time()
        with self._lock:
            for pid in list(self._workers):
                if pid not in present:
                    self._account_exit(pid, now)
            for pid, created in alive.items():
                if pid not in self._workers:
                    self._workers[pid] = _Worker(pid, created, starts_at=self._start_permit(pid, now))
                    if self._cgroups is not None and self.limits_enforced:
                        self._check_limits(pid)
                worker = self._workers[pid]
                if worker.ready_at is None:
                    try:
                        worker.ready_at = (self.ready_dir / str(pid)).stat().st_mtime
                    except OSError:
                        pass
            self._cpu.forget_others(set(self._workers))
            running = sum(1 for w in self._workers.values() if not w.terminating and w.gone_since is None)
            pending = max(0, self.desired - running)
            del self._pending_since[pending:]
            self._pending_since += [now] * (pending - len(self._pending_since))

    def _account_exit(self, pid: int, now: float) -> None:
        """A reaped worker: forget it; if nobody asked it to go, count a restart with its reason and back off."""
        worker = self._workers[pid]
        if worker.terminating:
            del self._workers[pid]
            (self.restarts_dir / f"{pid}.exit").unlink(missing_ok=True)
            return
        if not (self.restarts_dir / f"{pid}.exit").exists():
            # The master writes the record right after reaping: wait a moment for it, not for ever.
            worker.gone_since = worker.gone_since or now
            if now - worker.gone_since < 2.0:
                return
        del self._workers[pid]
        reason = exit_reason(pid, read_exit_record(self.restarts_dir, pid), self.log_tail(200))
        self.restart_reasons[reason] = self.restart_reasons.get(reason, 0) + 1
        self._backoff = after_exit(self._backoff, now, self._backoff_timings)
        self._replacements_due += 1
        self.on_event(
            f"replica {pid} exited unasked ({reason}): restart #{self.restarts}, back-off "
            f"{self._backoff.delay_s:g} s (CrashLoopBackOff)"
        )

    def _start_permit(self, pid: int, now: float) -> float:
        """Let a new worker start: at once, or after the back-off when it replaces one that crashed."""
        starts_at = now
        if self._replacements_due:
            self._replacements_due -= 1
            starts_at = max(now, self._backoff.restart_at())
        try:
            write_start_permit(self.restarts_dir, pid, starts_at)
        except OSError:
            pass  # the cluster is being torn down
        return starts_at

    def _check_limits(self, pid: int) -> None:
        # A worker joins its cgroup in its first instants; give it a moment before judging.
        for _ in range(20):
            if in_replica_cgroup(pid, self._cgroups):
                return
            if not psutil.pid_exists(pid):
                return
            time.sleep(0.05)
        self.limits_enforced = False
        self.limits_note = f"limits not enforced: replica {pid} could not join its cgroup (see {self.log_path})"
        self.on_event(self.limits_note)

    def _sync(self) -> None:
        """One HPA sync: observe every replica, ask the rule, apply its answer."""
        autoscaling = self.spec.autoscaling
        assert autoscaling is not None
        now = time.time()
        request_milli = round(self.cpu_request * 1000)
        window = self.timings.sync_period
        with self._lock:
            workers = list(self._workers.values())
            pending = list(self._pending_since)
            current = self.desired
        pods = []
        cores_total = 0.0
        for worker in workers:
            cores = self._cpu.cores(worker.pid, now)
            cores_total += cores or 0.0
            pods.append(PodObservation(
                name=str(worker.pid), cpu_request_milli=request_milli, phase="Running",
                deleting=worker.terminating, start_time=worker.started_at,
                ready=worker.ready_at is not None,
                ready_transition_time=worker.ready_at or worker.started_at,
                cpu_usage_milli=None if cores is None else int(cores * 1000),
                metric_timestamp=now, metric_window_s=window,
            ))
        pods += [
            PodObservation(name=f"pending-{i}", cpu_request_milli=request_milli, phase="Pending")
            for i in range(len(pending))
        ]
        decision = hpa_step(autoscaling, current, pods, self._hpa_memory, now, self.timings)
        self._hpa_memory = decision.memory
        self.last_utilization = decision.utilization
        ready = sum(1 for w in workers if w.ready_at and not w.terminating)
        utilization = "-" if decision.utilization is None else f"{decision.utilization}%"
        line = (
            f"{time.strftime('%H:%M:%S')} replicas {current} (ready {ready}, pending {len(pending)}) "
            f"cpu {cores_total:.2f} cores, {utilization} of request (target "
            f"{autoscaling.target_cpu_utilization}%)"
        )
        if decision.rescale:
            line += f" -> scale to {decision.desired_replicas} ({decision.reason})"
            self.scale_to(decision.desired_replicas)
        self.on_event(line)

    def scale_to(self, replicas: int) -> None:
        """Set the desired replicas: start workers (TTIN) up to what fits, stop the oldest (TTOU)."""
        if replicas < 1:
            raise ValueError("the one-machine cluster keeps at least one replica")
        assert self._process is not None
        with self._lock:
            self.desired = replicas
            target = min(replicas, self.capacity)
            while self._gunicorn_workers < target:
                self._process.send_signal(signal.SIGTTIN)
                self._gunicorn_workers += 1
                time.sleep(SIGNAL_GAP_S)
            while self._gunicorn_workers > target:
                candidates = [w for w in self._workers.values() if not w.terminating]
                if candidates:
                    oldest = min(candidates, key=lambda w: (w.started_at, w.pid))
                    oldest.terminating = True
                self._process.send_signal(signal.SIGTTOU)
                self._gunicorn_workers -= 1
                time.sleep(SIGNAL_GAP_S)

    # --- state -----------------------------------------------------------------------------------------

    def state(self) -> LocalClusterState:
        now = time.time()
        with self._lock:
            replicas = [
                LocalReplica(
                    pid=w.pid, phase="Terminating" if w.terminating else "Running",
                    ready=w.ready_at is not None and not w.terminating, started_at=w.started_at,
                    reason="CrashLoopBackOff" if w.starts_at > now and not w.terminating else "",
                )
                for w in sorted(self._workers.values(), key=lambda w: w.started_at)
            ]
            replicas += [
                LocalReplica(pid=None, phase="Pending", ready=False, started_at=since)
                for since in self._pending_since
            ]
            return LocalClusterState(
                master_pid=self._process.pid if self._process else 0,
                port=self.port,
                cpu_request_cores=self.cpu_request,
                mem_request_bytes=self.memory_request,
                cpu_limit_cores=self.limits.cpu_cores or 0.0,
                mem_limit_bytes=self.limits.memory_bytes or 0,
                limits_enforced=self.limits_enforced,
                limits_note=self.limits_note,
                restarts=self.restarts,
                restart_reasons=dict(self.restart_reasons),
                desired_replicas=self.desired,
                replicas=replicas,
                updated_at=time.time(),
            )

    def _write_state(self) -> None:
        write_state(self.state_path, self.state())
