"""`servetune labels`: live accuracy from the label store, and labels out to and back from annotation."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Annotated

import typer

from servetune.cli.errors import OptionError

labels_app = typer.Typer(
    help="Live accuracy from held-out user labels (servetune serve --holdout-fraction), and labels out to "
    "and back from annotation.",
    no_args_is_help=True,
)

LabelsDb = Annotated[str, typer.Option(
    "--labels-db", envvar="SERVETUNE_LABELS_DB", show_envvar=False,
    help="the store: a SQLite file or a postgresql:// URL (or env SERVETUNE_LABELS_DB)",
)]
Since = Annotated[str | None, typer.Option(
    help="only uploads since then: an ISO date/time (2026-12-01, 2026-12-01T10:00) or an age (30m, 2h, 7d)"
)]
AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DEFAULT_DB = "servetune-labels.db"


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """A --since value as a Unix time."""
    if text is None:
        return None
    now = time.time() if now is None else now
    age = AGE.match(text.strip())
    if age:
        return now - float(age[1]) * SECONDS[age[2]]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise OptionError(f"--since {text!r}: not an ISO date/time (2026-12-01T10:00) or an age (30m, 2h, 7d)") from None
    return moment.astimezone().timestamp()


@labels_app.command()
def stats(
    labels_db: LabelsDb = DEFAULT_DB,
    since: Since = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """Live top-1 accuracy with its 95 % Wilson interval and n, per model and per class, and the confusion
    matrix; 'wrong?' feedback and review labels counted apart."""
    from servetune.labels.stats import format_stats, label_stats
    from servetune.labels.store import open_store

    store = open_store(labels_db, create=False)
    try:
        models = label_stats(store.uploads(since=parse_since(since)))
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([m.as_dict() for m in models], indent=1))
    else:
        typer.echo(format_stats(models), nl=False)
