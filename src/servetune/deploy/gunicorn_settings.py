"""gunicorn settings for the one-machine cluster (`gunicorn -c python:servetune.deploy.gunicorn_settings`).

Every worker is a replica. Right after the fork, before it imports the app and loads the model, a worker
moves itself into its own cgroup (host/cgroups.py), so its limits hold from the first page it touches,
then waits until the cluster lets it start (a restart after a crash waits out its back-off,
deploy/restarts.py). When the master reaps a worker it records the worker's memory-cgroup counters (was it
killed for memory?) before removing the cgroup.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from servetune.deploy.restarts import (
    RESTARTS_DIR_VAR,
    memory_counters,
    wait_for_start_permit,
    write_exit_record,
)
from servetune.host.cgroups import ENV_VAR, ReplicaCgroups

worker_class = "servetune.serve.worker.TimedUvicornWorker"  # uvicorn with slow-client limits


def post_fork(server, worker) -> None:
    text = os.environ.get(ENV_VAR)
    if text:
        try:
            ReplicaCgroups.from_env(text).add(os.getpid())
        except OSError as error:
            server.log.warning("replica %s runs without limits: %s", os.getpid(), error)
    folder = os.environ.get(RESTARTS_DIR_VAR)
    if folder:
        # The worker still has the master's signal handlers until it starts: stop at once if asked now.
        for stop in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(stop, signal.SIG_DFL)
        waited = wait_for_start_permit(Path(folder), os.getpid(), worker.notify)
        if waited >= 1.0:
            server.log.info("replica %s started after a back-off of %.1f s", os.getpid(), waited)


def child_exit(server, worker) -> None:
    text = os.environ.get(ENV_VAR)
    cgroups = ReplicaCgroups.from_env(text) if text else None
    folder = os.environ.get(RESTARTS_DIR_VAR)
    if folder:
        try:
            write_exit_record(Path(folder), worker.pid, memory_counters(cgroups, worker.pid) if cgroups else {})
        except OSError:
            pass  # the cluster is being torn down
    if cgroups is not None:
        cgroups.remove(worker.pid)
