"""`servetune analyze|report|compare` as a user runs them: a real process, exit codes, messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from analyze.run_folders import RESOURCE_HEADER, handmade_run
from servetune.cli import app


def servetune(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from servetune.cli import app; app()", *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return handmade_run(tmp_path_factory.mktemp("runs") / "handmade")


def test_analyze_prints_the_statistics_and_json(run_dir):
    table = servetune("analyze", str(run_dir))
    assert table.returncode == 0, table.stderr
    assert "393,216 KB" in table.stdout and "1.267 /s" in table.stdout and "278.9 ms" in table.stdout
    as_json = servetune("analyze", str(run_dir), "--json")
    summary = json.loads(as_json.stdout)
    assert summary["memory_used_KB"] == 170000 and len(summary["phases"]) == 2


def test_report_and_compare_write_their_files(run_dir, tmp_path):
    report = servetune("report", str(run_dir))
    assert report.returncode == 0, report.stderr
    assert (run_dir / "report.html").is_file() and (run_dir / "summary.json").is_file()
    compare = CliRunner().invoke(app, ["compare", str(run_dir), str(run_dir), "--out", str(tmp_path / "cmp")])
    assert compare.exit_code == 0, compare.output
    assert (tmp_path / "cmp" / "comparison.html").is_file()


def test_bad_input_is_one_clear_line_and_a_nonzero_exit(tmp_path):
    missing = servetune("analyze", str(tmp_path / "nope"))  # a real process: exit code and stderr
    assert missing.returncode == 2 and "no such run folder" in missing.stderr and "Traceback" not in missing.stderr
    run = handmade_run(tmp_path / "bad")
    (run / "resource_usage.csv").write_text(RESOURCE_HEADER + "2026-11-29 05:00:00,1,0.5,lots,1,1,1,1\n")
    for command in (["analyze", str(run)], ["report", str(run)], ["compare", str(run), "--out", str(tmp_path)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2
        assert f"{run / 'resource_usage.csv'}: line 2: mem_req_KB 'lots' is not a number" in result.stderr
