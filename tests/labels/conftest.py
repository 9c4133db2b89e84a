"""The label store's tests run on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from postgres_server import PostgresServer, postgres_server
from servetune.labels.store import LabelStore, open_store

DATABASES = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> str:
    """A fresh store's --labels-db value, for each kind of database."""
    if request.param == "sqlite":
        return str(tmp_path / "labels.db")
    return request.getfixturevalue("postgres").database(f"store_{next(DATABASES)}")


@pytest.fixture
def store(store_url: str) -> Iterator[LabelStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()
