"""gunicorn settings for the one-machine cluster (`gunicorn -c python:servetune.deploy.gunicorn_settings`).

Every worker is a replica. Right after the fork, before it imports the app and loads the model, a worker
moves itself into its own cgroup (deploy/cgroups.py), so its limits hold from the first page it touches.
"""

from __future__ import annotations

import os

from servetune.deploy.cgroups import ENV_VAR, ReplicaCgroups

worker_class = "servetune.serve.worker.TimedUvicornWorker"  # uvicorn with slow-client limits


def post_fork(server, worker) -> None:
    text = os.environ.get(ENV_VAR)
    if not text:
        return
    try:
        ReplicaCgroups.from_env(text).add(os.getpid())
    except OSError as error:
        server.log.warning("replica %s runs without limits: %s", os.getpid(), error)


def child_exit(server, worker) -> None:
    text = os.environ.get(ENV_VAR)
    if text:
        ReplicaCgroups.from_env(text).remove(worker.pid)
