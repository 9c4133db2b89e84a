"""The servetune command as a user runs it: a real process with its exit code, stdout and stderr."""

from __future__ import annotations

import subprocess
import sys

CLI = [sys.executable, "-c", "from servetune.cli import app; app()"]


def servetune(*args: str, timeout: float = 300, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], check=False, capture_output=True, text=True, timeout=timeout, cwd=cwd)
