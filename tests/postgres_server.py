"""A real PostgreSQL server for tests, in a temporary folder: initdb, then pg_ctl start/stop on a free port.

The binaries come from PATH or Debian's /usr/lib/postgresql/<version>/bin (`.ci/run` installs the
`postgresql` package). initdb and postgres refuse to run as root, so as root (CI) every command runs as
`nobody` through runuser, in a folder that user owns. Password authentication over TCP, so tests see the
URL's password at work.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from environment import IN_CI
from servers import free_port

USER = "servetune"
PASSWORD = "pg-s3cret-7f1d"  # tests check that it never shows in logs, manifests or reports


def postgres_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version_key, reverse=True)), None
    )
    if found is None:
        message = f"needs PostgreSQL's `{name}` (Debian package postgresql); .ci/run installs it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


def version_key(path: str) -> int:
    version = Path(path).parts[-3]
    return int(version) if version.isdigit() else 0


class PostgresServer:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="servetune-pg-"))
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.folder, "nobody")
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/postgres"
        password_file = self.folder / "password"
        password_file.write_text(PASSWORD)
        if self.as_root:
            shutil.chown(password_file, "nobody")
        self.run(
            postgres_bin("initdb"), "-D", str(self.data), "-U", USER, "--auth-local=trust",
            "--auth-host=scram-sha-256", f"--pwfile={password_file}", "-E", "UTF8", "--no-sync",
        )

    def run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "nobody", "--"] if self.as_root else []
        result = subprocess.run([*prefix, *command], check=False, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise AssertionError(f"{command[0]} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.folder} -F -c max_connections=50"
        self.run(postgres_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"),
                 "-w", "-t", "30", "start")

    def stop(self) -> None:
        self.run(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def database(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        except AssertionError:
            pass  # already stopped by the test
        server.remove()
