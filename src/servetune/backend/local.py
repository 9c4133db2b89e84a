"""The one-machine cluster as a backend: deploy/local.py's replicas, monitor/local.py's samples.

`servetune run --backend local` and `servetune deploy local` both go through it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from servetune.backend.measure import load_and_monitor
from servetune.backend.protocol import BackendName, Measurement
from servetune.config import DeploymentSpec, ResourceSample
from servetune.deploy.local import LocalCluster, LocalClusterError, model_footprint
from servetune.runfolder import RunRecorder


class LocalBackend:
    name = BackendName.LOCAL
    warm_up_description = "load the model once"
    host_cpu_counts = ("this machine's busy cores less this run's processes (the load driver, the cluster and its "
                       "replicas): what other work took from the replicas")

    def __init__(self, spec: DeploymentSpec, model_path: Path, workdir: Path, port: int = 0,
                 time_scale: float = 1.0, ready_timeout_s: float = 300.0,
                 on_event: Callable[[str], None] = print) -> None:
        self.spec, self.model_path, self.workdir = spec, model_path, workdir
        self.port, self.time_scale, self.ready_timeout_s = port, time_scale, ready_timeout_s
        self.on_event = on_event
        self.cluster: LocalCluster | None = None
        self.footprint_bytes: int | None = None

    def warm_up(self) -> str:
        """Load and warm up the model as a replica does, once: a broken artifact fails here with its reason,
        the file is then in the page cache, and the footprint measured decides whether the spec's memory
        limit can hold a replica (the cluster then skips its own load)."""
        self.footprint_bytes = model_footprint(self.model_path)
        return (f"model loaded once ({self.model_path.stat().st_size / 1e6:.1f} MB now in the page cache; "
                f"a replica takes {self.footprint_bytes / 2**20:.0f} MiB)")

    def apply(self) -> str:
        self.cluster = LocalCluster(
            self.spec, self.model_path, port=self.port, workdir=self.workdir, time_scale=self.time_scale,
            on_event=self.on_event, footprint_bytes=self.footprint_bytes,
        )
        self.cluster.start()
        return f"gunicorn started on port {self.cluster.port}"

    def wait_ready(self) -> str:
        cluster = self.started()
        cluster.wait_ready(self.ready_timeout_s)
        return f"{min(self.spec.replicas, cluster.capacity)} replica(s) ready on port {cluster.port}"

    def started(self) -> LocalCluster:
        if self.cluster is None:
            raise LocalClusterError("the cluster was not started (apply() first)")
        return self.cluster

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.started().port}"

    @property
    def state_path(self) -> Path:
        return self.started().state_path

    def monitor(self, out: Path, interval_s: float, stop: threading.Event,
                on_sample: Callable[[ResourceSample], None]) -> int:
        from servetune.monitor.local import monitor_local

        return monitor_local(self.state_path, out, interval_s=interval_s, stop_event=stop,
                             on_sample=on_sample)

    def measure(self, measurement: Measurement, recorder: RunRecorder) -> str:
        return load_and_monitor(self, measurement, recorder)

    def failure(self) -> str | None:
        return self.cluster.error if self.cluster is not None else None

    def limits(self) -> dict:
        if self.cluster is None:
            return {}
        return {"limits_enforced": self.cluster.limits_enforced, "limits_note": self.cluster.limits_note,
                "restarts": self.cluster.restarts, "restart_reasons": self.cluster.restart_reasons}

    def tear_down(self) -> str:
        if self.cluster is None:
            return "nothing was started"
        self.cluster.stop()
        return "every replica has exited"
