"""The label store: one table of uploads (records.py) in SQLite (one file, WAL) or PostgreSQL.

Calls are synchronous and belong to one thread at a time: the server makes them from its writer thread
(writer.py), `servetune labels` from the command. Every failure of the database becomes StoreUnavailable,
whose message never carries the URL's password. SQL is always parameterised.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from servetune.errors import FailedError, ServetuneError, first_line
from servetune.labels.location import StoreLocation, parse_location
from servetune.labels.migrate import VERSION_TABLE, migrations
from servetune.labels.records import COLUMNS, Answer, Outcome, Upload

CONNECT_TIMEOUT_S = 3
STATEMENT_TIMEOUT_MS = 5000
MIGRATION_LOCK = 0x5E7E7E  # PostgreSQL advisory lock id, one per schema
SELECT_UPLOADS = f"SELECT {', '.join(COLUMNS)} FROM uploads"
AnswerKind = Literal["label", "feedback"]
ANSWER_COLUMNS = {  # kind of upload, the answer's column, its time column
    "label": ("holdout", "label", "labelled_at"),
    "feedback": ("shown", "feedback_label", "feedback_at"),
}


class StoreUnavailable(FailedError):
    """The database cannot be reached or refused a statement; the message says why, without secrets."""


class StoreSchemaError(ServetuneError):
    """The store's schema is newer than this servetune, or not servetune's."""


class LabelStore:
    """An open connection to the store, migrated to the latest schema."""

    def __init__(self, location: StoreLocation) -> None:
        self.location = location
        self.kind = location.kind
        self.connection = self.connect()
        try:
            self.migrate()
        except BaseException:
            self.close()
            raise

    # --- connection ---------------------------------------------------------------------------------

    def connect(self):
        where = self.location.redacted()
        if self.kind == "sqlite":
            path = Path(self.location.target)
            if not path.parent.is_dir():
                raise StoreUnavailable(f"labels store {where}: no such folder {path.parent}")
            try:
                connection = sqlite3.connect(
                    path, timeout=STATEMENT_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
                )
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as error:
                raise StoreUnavailable(f"labels store {where}: {error}") from None
            return connection
        import psycopg

        try:
            return psycopg.connect(
                self.location.target, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={STATEMENT_TIMEOUT_MS}",
                application_name="servetune",
            )
        except psycopg.Error as error:
            raise StoreUnavailable(f"labels store {where}: {first_line(error)}") from None

    def close(self) -> None:
        # Closing a broken connection may fail too; there is nothing left to save.
        with contextlib.suppress(Exception):
            self.connection.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction (SQLite takes the write lock at once, so two writers never deadlock)."""
        with self.errors():
            self.connection.execute("BEGIN IMMEDIATE" if self.kind == "sqlite" else "BEGIN")
            try:
                yield
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise
            self.connection.execute("COMMIT")

    @contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as error:
            raise StoreUnavailable(f"labels store {self.location.redacted()}: {error}") from None
        except Exception as error:
            if type(error).__module__.startswith("psycopg"):
                raise StoreUnavailable(f"labels store {self.location.redacted()}: {first_line(error)}") from None
            raise

    def execute(self, sql: str, parameters: Sequence = ()) -> list[tuple]:
        """Run one statement written with `?` placeholders; the rows it returns."""
        if self.kind == "postgresql":
            sql = sql.replace("?", "%s")
        with self.errors():
            cursor = self.connection.execute(sql, tuple(parameters))
            return list(cursor.fetchall()) if cursor.description else []

    # --- schema -------------------------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply the migrations this store lacks; its schema version afterwards."""
        known = migrations()
        with self.transaction():
            if self.kind == "postgresql":
                self.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            self.execute(
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
            )
            current = self.execute(f"SELECT COALESCE(MAX(version), 0) FROM {VERSION_TABLE}")[0][0]
            if current > len(known):
                raise StoreSchemaError(
                    f"labels store {self.location.redacted()}: schema version {current} is newer than this "
                    f"servetune knows ({len(known)}); upgrade servetune"
                )
            for migration in known[current:]:
                for statement in migration.statements:
                    self.execute(statement)
                self.execute(
                    f"INSERT INTO {VERSION_TABLE} (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )
        return len(known)

    def version(self) -> int:
        return self.execute(f"SELECT COALESCE(MAX(version), 0) FROM {VERSION_TABLE}")[0][0]

    # --- writes -------------------------------------------------------------------------------------

    def add(self, uploads: Sequence[Upload]) -> None:
        """Insert uploads in one transaction (a key already there is left as it is: a retried batch)."""
        if not uploads:
            return
        marks = ", ".join("?" * len(COLUMNS))
        sql = f"INSERT INTO uploads ({', '.join(COLUMNS)}) VALUES ({marks}) ON CONFLICT (key) DO NOTHING"
        if self.kind == "postgresql":
            sql = sql.replace("?", "%s")
        with self.transaction(), self.errors():
            cursor = self.connection.cursor()
            cursor.executemany(sql, [upload.values() for upload in uploads])

    def answer(self, kind: AnswerKind, key: str, label: str | None, now: float) -> Answer:
        """Record a held-out label or a "wrong?" feedback once, before its upload expires."""
        upload_kind, column, time_column = ANSWER_COLUMNS[kind]
        with self.transaction():
            rows = self.execute(
                f"UPDATE uploads SET {column} = ?, {time_column} = ? "
                f"WHERE key = ? AND kind = ? AND {time_column} IS NULL AND expires_at > ? "
                f"RETURNING {', '.join(COLUMNS)}",
                (label, now, key, upload_kind, now),
            )
            if rows:
                return Answer(Outcome.ACCEPTED, Upload.from_row(rows[0]))
            found = self.execute(f"SELECT kind, {time_column} FROM uploads WHERE key = ?", (key,))
        if not found or found[0][0] != upload_kind:
            return Answer(Outcome.UNKNOWN)
        return Answer(Outcome.USED if found[0][1] is not None else Outcome.EXPIRED)

    def add_reviews(self, labels: Sequence[tuple[str, str]], now: float) -> list[str]:
        """Store review labels (key, class) from an annotation tool, all or none: the keys the store does
        not have (then nothing is stored)."""
        with self.transaction():
            unknown = [key for key, _ in labels if not self.execute("SELECT 1 FROM uploads WHERE key = ?", (key,))]
            if unknown:
                return unknown
            for key, label in labels:
                self.execute("UPDATE uploads SET review_label = ?, reviewed_at = ? WHERE key = ?", (label, now, key))
        return []

    # --- reads --------------------------------------------------------------------------------------

    def uploads(self, since: float | None = None, until: float | None = None) -> list[Upload]:
        """Every upload created in [since, until), oldest first."""
        rows = self.execute(
            f"{SELECT_UPLOADS} WHERE created_at >= ? AND created_at < ? ORDER BY created_at, key",
            (since if since is not None else 0.0, until if until is not None else 1e18),
        )
        return [Upload.from_row(row) for row in rows]

    def accuracy_by_model(self) -> dict[str, tuple[int, int]]:
        """Held-out labels per model sha256: (correct, labelled)."""
        rows = self.execute(
            "SELECT model_sha256, SUM(CASE WHEN label = predicted THEN 1 ELSE 0 END), COUNT(*) "
            "FROM uploads WHERE kind = 'holdout' AND label IS NOT NULL GROUP BY model_sha256"
        )
        return {sha: (int(correct), int(total)) for sha, correct, total in rows}


def open_store(location: str | StoreLocation, create: bool = True) -> LabelStore:
    """Connect to the store at a --labels-db value and bring its schema up to date; with create=False a
    SQLite file that does not exist is an error (a reader must not make an empty store)."""
    if isinstance(location, str):
        location = parse_location(location)
    if not create and location.kind == "sqlite" and not Path(location.target).is_file():
        raise StoreUnavailable(f"labels store {location.target}: no such file")
    return LabelStore(location)

