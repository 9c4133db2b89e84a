"""The gunicorn worker: servetune's own log lines reach the worker's log, as uvicorn's do."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from onnx_models import tiny_artifact
from servetune.config import DeploymentSpec
from servetune.deploy.local import LocalCluster
from servetune.deploy.local_postgres import postgres_bin


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_replicas_log_their_label_store_to_the_clusters_log(tmp_path: Path, database: str) -> None:
    if database == "postgresql" and postgres_bin("initdb") is None:
        pytest.skip("needs PostgreSQL's initdb (Debian package postgresql); .ci/run installs it")
    spec = DeploymentSpec.model_validate({
        "replicas": 2, "requests": {"cpu": 0.1, "memory_mb": 128}, "limits": {"cpu": 0.5, "memory_mb": 512},
        "termination_grace_period_seconds": 5, "labels": {"holdout_fraction": 0.5, "database": database},
    })
    with LocalCluster(spec, tiny_artifact(tmp_path / "tiny.onnx"), workdir=tmp_path / "cluster") as cluster:
        cluster.wait_ready(60)
        pids = {replica.pid for replica in cluster.state().replicas}
        deadline = time.monotonic() + 10
        while len(connected := re.findall(r"\[(\d+)\] \[INFO\] labels store connected: (\S+)",
                                          cluster.log_path.read_text())) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        password = cluster.postgres.password if cluster.postgres else None
        log = cluster.log_path.read_text()
    assert {int(pid) for pid, _ in connected} == pids  # each replica, at INFO, in gunicorn's own format
    where = {location for _, location in connected}
    if database == "sqlite":
        assert where == {str(tmp_path / "cluster" / "labels.db")}
    else:
        [url] = where
        assert url.startswith("postgresql://servetune:***@127.0.0.1:") and password not in log
