"""A PostgreSQL server of the one-machine cluster's own, for the label store (spec `labels.database:
postgresql`): initdb in a folder, then pg_ctl start/stop on a free port of 127.0.0.1.

The binaries come from PATH or Debian's /usr/lib/postgresql/<version>/bin (package `postgresql`). initdb and
postgres refuse to run as root, so as root every command runs as `nobody` (runuser), in a folder that user
owns. Connections need a password (scram-sha-256), made here at random and kept only in the URL.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from servetune.errors import FailedError

USER = "servetune"
UNPRIVILEGED = "nobody"


class LocalPostgresError(FailedError):
    """The local PostgreSQL server cannot be set up or started; the message says why."""


def postgres_bin(name: str) -> str | None:
    """A PostgreSQL program: on PATH, else the newest of Debian's /usr/lib/postgresql/*/bin."""
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=major_version, reverse=True)
    return shutil.which(name) or next(iter(candidates), None)


def major_version(path: str) -> int:
    version = Path(path).parts[-3]
    return int(version) if version.isdigit() else 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalPostgres:
    """`create()` a data folder (once), `start()`, `stop()`; `url` connects as its user."""

    def __init__(self, folder: Path | None = None, password: str | None = None, port: int | None = None) -> None:
        # Under root the folder must be reachable by `nobody`: a fresh one in the temporary directory.
        self.as_root = os.geteuid() == 0
        self.folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="servetune-pg-"))
        self.data = self.folder / "data"
        self.password = password or secrets.token_urlsafe(18)
        self.port = port or free_port()
        self.url = f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/postgres"

    def program(self, name: str) -> str:
        found = postgres_bin(name)
        if found is None:
            raise LocalPostgresError(
                f"PostgreSQL's `{name}` was not found (install Debian's postgresql package, or put its bin folder "
                "on PATH)"
            )
        return found

    def run(self, *command: str) -> None:
        prefix = ["runuser", "-u", UNPRIVILEGED, "--"] if self.as_root else []
        try:
            result = subprocess.run([*prefix, *command], check=False, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise LocalPostgresError(f"{Path(command[0]).name}: {error}") from None
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip().splitlines()
            raise LocalPostgresError(f"{Path(command[0]).name} failed: {output[-1] if output else result.returncode}")

    def create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.folder, UNPRIVILEGED)
            self.folder.chmod(0o700)
        password_file = self.folder / "password"
        password_file.write_text(self.password)
        if self.as_root:
            shutil.chown(password_file, UNPRIVILEGED)
        try:
            self.run(
                self.program("initdb"), "-D", str(self.data), "-U", USER, "--auth-local=trust",
                "--auth-host=scram-sha-256", f"--pwfile={password_file}", "-E", "UTF8", "--no-sync",
            )
        finally:
            password_file.unlink(missing_ok=True)

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.folder} -c max_connections=100"
        self.run(self.program("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.folder / "server.log"),
                 "-w", "-t", "60", "start")

    def stop(self) -> None:
        self.run(self.program("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
