"""Versioned schema migrations: `migrations/NNNN_name.sql`, applied in order, each recorded in one table.

Every process that opens the store migrates it, so two replicas may start at once: the migration runs in
one transaction under a lock (PostgreSQL: an advisory lock; SQLite: BEGIN IMMEDIATE), and a process that
waited finds the work done. A store whose schema is newer than this servetune knows is refused, not
touched. The SQL is written once for both databases (their common types: TEXT, INTEGER, DOUBLE PRECISION).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "servetune_schema"
MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def migrations(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in version order; the numbers must run 1, 2, 3 ... without a gap."""
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path}: a migration is named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], split_statements(path.read_text(encoding="utf-8"))))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"{folder}: migration numbers must be 1..{len(found)} in order, found {versions}")
    return found


def split_statements(sql: str) -> tuple[str, ...]:
    """The statements of a file (our files put no ';' inside a literal); `--` comments dropped."""
    text = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    return tuple(s.strip() for s in text.split(";") if s.strip())


def latest_version() -> int:
    return len(migrations())
