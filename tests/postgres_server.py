"""A real PostgreSQL server for tests: the one-machine cluster's own (deploy/local_postgres.py) in a temporary
folder, with a known password so tests can look for it in logs, manifests and reports."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from environment import IN_CI
from servetune.deploy.local_postgres import LocalPostgres, LocalPostgresError, postgres_bin

PASSWORD = "pg-s3cret-7f1d"


class PostgresServer(LocalPostgres):
    def database(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    if postgres_bin("initdb") is None:
        message = "needs PostgreSQL's initdb (Debian package postgresql); .ci/run installs it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer(password=PASSWORD)
    try:
        server.create()
        server.start()
        yield server
    finally:
        with contextlib.suppress(LocalPostgresError):  # already stopped by the test, or never started
            server.stop()
        server.remove()
