"""What only PostgreSQL has: replicas migrating at once, passwords, a server that is not there."""

from __future__ import annotations

import threading

import pytest

from postgres_server import PASSWORD
from servetune.labels.migrate import VERSION_TABLE, latest_version
from servetune.labels.store import StoreUnavailable, open_store


def test_replicas_starting_at_once_migrate_the_schema_once(postgres) -> None:
    url = postgres.database("migrate_at_once")
    opened, failures = [], []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            opened.append(open_store(url))
        except Exception as error:  # noqa: BLE001 - any failure is the test's finding
            failures.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == [] and len(opened) == 4
    versions = opened[0].execute(f"SELECT version FROM {VERSION_TABLE} ORDER BY version")
    assert [row[0] for row in versions] == list(range(1, latest_version() + 1))
    for store in opened:
        store.close()


def test_a_wrong_password_is_refused_without_showing_either_password(postgres) -> None:
    url = postgres.url.replace(PASSWORD, "not-the-password-42")
    with pytest.raises(StoreUnavailable) as refused:
        open_store(url)
    message = str(refused.value)
    assert "password authentication failed" in message
    assert "not-the-password-42" not in message and PASSWORD not in message and ":***@" in message


def test_a_server_that_is_not_there_is_unavailable(postgres) -> None:
    from servers import free_port

    url = postgres.url.replace(f":{postgres.port}/", f":{free_port()}/")
    with pytest.raises(StoreUnavailable, match="Connection refused|connection failed|could not connect"):
        open_store(url)
