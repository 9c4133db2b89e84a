"""The container recipe installs only the serving dependencies and runs as a non-root user on port 5000.

No container engine runs here, so this checks the recipe's text and what it installs (pyproject's core set),
and which engine `make image` picks (with stand-in engine commands).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAINING_ONLY = {"torch", "tensorflow", "tensorflow-cpu", "keras", "onnx", "onnxscript", "torchvision"}


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


def test_core_dependencies_hold_no_training_framework() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {requirement_name(r) for r in project["dependencies"]}
    assert "onnxruntime" in names
    assert not names & TRAINING_ONLY


def test_dockerfile_installs_the_package_without_extras() -> None:
    steps = instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(arg for op, arg in steps if op == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs), runs
    assert "[" not in runs and not any(name in runs.split() for name in TRAINING_ONLY)


def test_dockerfile_runs_as_non_root_on_port_5000_with_a_readiness_check() -> None:
    steps = instructions()
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("EXPOSE", "5000") in steps
    health = [arg for op, arg in steps if op == "HEALTHCHECK"]
    assert len(health) == 1 and "/readyz" in health[0] and "curl" not in health[0]
    command = [arg for op, arg in steps if op == "CMD"][-1]
    assert "serve" in command and "0.0.0.0" in command and "5000" in command


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "runs", "tests", "benchmarks", ".git"} <= ignored


def only_these_commands(folder: Path) -> dict[str, str]:
    """An environment whose PATH holds the stand-ins and the few tools the recipe uses, not a real engine."""
    for tool in ("sh", "grep", "cut"):
        link = folder / tool
        if not link.exists():
            link.symlink_to(shutil.which(tool))
    return {"PATH": str(folder), "HOME": str(folder)}


def stand_in(folder: Path, name: str, info_works: bool) -> None:
    """A container engine's command that notes each call; `info` fails like docker without its daemon."""
    script = folder / name
    script.write_text(
        "#!/bin/sh\n"
        f'echo "{name} $*" >> "{folder}/calls"\n'
        f'if [ "$1" = info ]; then exit {0 if info_works else 1}; fi\n'
    )
    script.chmod(0o755)


def make_image(env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [shutil.which("make"), "-s", "image"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("engines", "used"), [
    ({"docker": True, "podman": True}, "docker"),
    ({"docker": False, "podman": True}, "podman"),  # a docker command with no daemon behind it
    ({"podman": True}, "podman"),
])
def test_make_image_builds_with_an_engine_that_answers(tmp_path, engines, used):
    for name, info_works in engines.items():
        stand_in(tmp_path, name, info_works)
    env = only_these_commands(tmp_path)
    result = make_image(env)
    assert result.returncode == 0, result.stderr
    builds = [line for line in (tmp_path / "calls").read_text().splitlines() if " build " in f"{line} "]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert builds == [f"{used} build -t servetune:{version} ."]


def test_make_image_says_when_no_engine_can_build(tmp_path):
    stand_in(tmp_path, "docker", info_works=False)
    env = only_these_commands(tmp_path)
    result = make_image(env)
    assert result.returncode != 0
    assert "docker's daemon does not answer (docker info) and podman is not installed" in result.stderr
