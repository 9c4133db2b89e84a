"""The label store on a real SQLite file and a real PostgreSQL server: migrations, answers once and in time,
reads."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from label_uploads import make_upload
from servetune.labels.migrate import VERSION_TABLE, latest_version, migrations, split_statements
from servetune.labels.records import Outcome
from servetune.labels.store import StoreSchemaError, StoreUnavailable, open_store


def test_a_new_file_is_migrated_to_the_latest_version_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "labels.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [row[0] for row in connection.execute(f"SELECT version FROM {VERSION_TABLE}")]
    assert versions == list(range(1, latest_version() + 1))
    # Opening again applies nothing twice.
    again = open_store(str(path))
    assert again.version() == latest_version()
    again.close()


def test_a_store_newer_than_the_code_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "labels.db"
    open_store(str(path)).close()
    with sqlite3.connect(path) as connection:
        connection.execute(f"INSERT INTO {VERSION_TABLE} VALUES (99, 'future', 0)")
    with pytest.raises(StoreSchemaError, match="schema version 99 is newer"):
        open_store(str(path))


def test_a_store_in_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="no such folder"):
        open_store(str(tmp_path / "nowhere" / "labels.db"))


def test_migration_files_are_numbered_without_gaps() -> None:
    found = migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert split_statements("CREATE TABLE a (x TEXT); -- note; here\nCREATE INDEX i ON a (x);") == (
        "CREATE TABLE a (x TEXT)", "CREATE INDEX i ON a (x)",
    )


def test_a_held_out_label_is_taken_once(store) -> None:
    _, upload = make_upload(predicted="Bread")
    store.add([upload])
    answer = store.answer("label", upload.key, "Egg", time.time())
    assert answer.outcome is Outcome.ACCEPTED
    assert answer.upload.label == "Egg" and answer.upload.predicted == "Bread"
    assert answer.upload.top_k == upload.top_k
    assert store.answer("label", upload.key, "Bread", time.time()).outcome is Outcome.USED
    assert store.uploads()[0].label == "Egg"


def test_unknown_expired_and_wrong_kind_answers_are_refused(store) -> None:
    _, expired = make_upload(ttl_s=1, created_at=time.time() - 10)
    _, shown = make_upload(kind="shown")
    store.add([expired, shown])
    assert store.answer("label", "0" * 64, "Egg", time.time()).outcome is Outcome.UNKNOWN
    assert store.answer("label", expired.key, "Egg", time.time()).outcome is Outcome.EXPIRED
    # A shown prediction takes feedback, never a held-out label, and the other way round.
    assert store.answer("label", shown.key, "Egg", time.time()).outcome is Outcome.UNKNOWN
    assert store.answer("feedback", shown.key, None, time.time()).outcome is Outcome.ACCEPTED
    assert store.answer("feedback", shown.key, "Egg", time.time()).outcome is Outcome.USED
    assert store.uploads()[-1].feedback_at is not None and store.uploads()[-1].label is None


def test_a_batch_written_twice_keeps_one_row_each(store) -> None:
    uploads = [make_upload()[1] for _ in range(3)]
    store.add(uploads)
    store.add(uploads)
    assert [u.key for u in store.uploads()] == [u.key for u in uploads]


def test_reads_select_by_time_and_accuracy_counts_only_held_out_labels(store) -> None:
    now = time.time()
    old = make_upload(created_at=now - 3600, ttl_s=7200)[1]
    right = make_upload(predicted="Egg")[1]
    wrong = make_upload(predicted="Egg")[1]
    shown = make_upload(kind="shown", predicted="Egg")[1]
    store.add([old, right, wrong, shown])
    store.answer("label", right.key, "Egg", now)
    store.answer("label", wrong.key, "Soup", now)
    store.answer("feedback", shown.key, "Soup", now)
    assert [u.key for u in store.uploads(since=now - 60)] == [right.key, wrong.key, shown.key]
    assert store.accuracy_by_model() == {"a" * 64: (1, 2)}


def test_review_labels_are_stored_all_or_none(store) -> None:
    upload = make_upload(kind="shown", review=True)[1]
    store.add([upload])
    assert store.add_reviews([(upload.key, "Soup"), ("f" * 64, "Egg")], time.time()) == ["f" * 64]
    assert store.uploads()[0].review_label is None
    assert store.add_reviews([(upload.key, "Soup")], time.time()) == []
    assert store.uploads()[0].review_label == "Soup"


def test_sql_text_in_a_label_is_stored_as_text(store) -> None:
    upload = make_upload()[1]
    store.add([upload])
    evil = "Egg'); DROP TABLE uploads; --"
    assert store.answer("label", upload.key, evil, time.time()).upload.label == evil
    assert len(store.uploads()) == 1
