"""Start the server: one uvicorn process, or gunicorn with N uvicorn workers sharing the port.

gunicorn workers build their app with `app_from_env()`, so the settings travel as SERVETUNE_* variables;
their Prometheus metrics are merged through files in PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from servetune.serve.settings import ServerSettings

# SIGTERM: stop accepting, finish what is in flight (Kubernetes' grace period is 30 s by default).
GRACEFUL_TIMEOUT_S = 25


def serve_uvicorn(settings: ServerSettings, host: str, port: int, access_log: bool = False) -> None:
    import uvicorn

    from servetune.serve.app import create_app
    from servetune.serve.connections import server_config
    from servetune.serve.drain import DrainingServer

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    config = uvicorn.Config(
        create_app(settings), host=host, port=port, access_log=access_log, log_level="info",
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S, **server_config(),
    )
    DrainingServer(config).run()


def serve_gunicorn(
    settings: ServerSettings, host: str, port: int, workers: int, access_log: bool = False
) -> None:
    from gunicorn.app.base import BaseApplication

    os.environ.update(settings.to_env())
    own_metrics_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    if own_metrics_dir:
        # Must be set before any worker imports prometheus_client.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="servetune-metrics-")
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]

    def child_exit(server: object, worker: object) -> None:
        # A worker that was killed could not clean up after itself.
        from prometheus_client import multiprocess

        pid = worker.pid  # type: ignore[attr-defined]
        multiprocess.mark_process_dead(pid)
        if settings.ready_dir:
            (Path(settings.ready_dir) / str(pid)).unlink(missing_ok=True)

    class Gunicorn(BaseApplication):
        def load_config(self) -> None:
            options = {
                "bind": f"{host}:{port}",
                "workers": workers,
                "worker_class": "servetune.serve.worker.TimedUvicornWorker",
                "graceful_timeout": GRACEFUL_TIMEOUT_S,
                "timeout": 60,
                "child_exit": child_exit,
                "accesslog": "-" if access_log else None,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):  # in each worker, after fork
            from servetune.serve.app import app_from_env

            return app_from_env()

    try:
        Gunicorn().run()
    finally:
        if own_metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def threads_per_worker(threads: int | None, workers: int) -> int | None:
    """Inference threads for each of `workers` processes: as given, or the CPUs granted shared between them."""
    if threads is not None or workers == 1:
        return threads  # None: one process takes every CPU it is granted (serve/app.py)
    from servetune.host.cpu_quota import inference_threads

    return max(1, inference_threads() // workers)
