"""The gunicorn worker class: uvicorn's, with the slow-client limits of serve/connections.py, and servetune's
own log lines (the label store connected or down, a model loaded) written to the worker's log as uvicorn's
are: gunicorn configures only its own loggers, so without this they would reach no handler below WARNING."""

from __future__ import annotations

import logging
from typing import Any

from uvicorn_worker import UvicornWorker

from servetune.serve.connections import server_config


class TimedUvicornWorker(UvicornWorker):
    CONFIG_KWARGS = {"loop": "auto", **server_config()}  # noqa: RUF012 (the base class's own attribute)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        logger = logging.getLogger("servetune")
        logger.handlers = self.log.error_log.handlers  # gunicorn's error log: stderr, or --error-logfile
        logger.setLevel(self.log.error_log.level)  # --log-level: info unless asked otherwise
        logger.propagate = False
