"""--labels-db values: SQLite paths, PostgreSQL URLs, and a password that never shows."""

from __future__ import annotations

import pytest

from servetune.labels.location import StoreLocationError, parse_location


def test_sqlite_paths_and_urls() -> None:
    assert parse_location("labels.db").kind == "sqlite"
    assert parse_location("sqlite:///var/lib/labels.db").target == "/var/lib/labels.db"
    assert parse_location("sqlite:labels.db").target == "labels.db"


def test_a_postgresql_url_is_redacted_everywhere_it_is_shown() -> None:
    location = parse_location("postgresql://servetune:s3cret@db:5432/labels?sslmode=require&password=s3cret")
    assert location.kind == "postgresql"
    assert "s3cret" in location.target
    for shown in (location.redacted(), str(location), repr(location), f"{location}"):
        assert "s3cret" not in shown
    assert location.redacted() == "postgresql://servetune:***@db:5432/labels?sslmode=require&password=%2A%2A%2A"


@pytest.mark.parametrize(
    ("value", "reason"),
    [("", "empty"), ("mysql://x@y/z", "unsupported scheme 'mysql'"), ("sqlite://", "no file"),
     ("postgresql:///labels", "no host"), ("postgresql://u:pw@[::1/x", "not a valid URL"),
     ("postgresql://u:pw@db:99999/x", "not a valid URL")],
)
def test_unusable_values_say_why(value: str, reason: str) -> None:
    with pytest.raises(StoreLocationError, match=reason) as refused:
        parse_location(value)
    assert ":pw@" not in str(refused.value)
