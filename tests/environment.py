"""What a test needs from its machine: optional shared data and system tools (skip or fail with a reason)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shared_data(relative: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"needs {path} (the project's shared data folder is not present on this machine)")
    return path


def require_tool(name: str) -> str:
    """The path of a system tool; in CI its absence is a failure, elsewhere a skip with a reason."""
    path = shutil.which(name)
    if path is None:
        message = f"needs the `{name}` command (Debian package); .ci/run installs it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path
