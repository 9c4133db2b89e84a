"""The gunicorn worker class: uvicorn's, with the slow-client limits of serve/connections.py."""

from __future__ import annotations

from uvicorn_worker import UvicornWorker

from servetune.serve.connections import server_config


class TimedUvicornWorker(UvicornWorker):
    CONFIG_KWARGS = {"loop": "auto", **server_config()}  # noqa: RUF012 (the base class's own attribute)
