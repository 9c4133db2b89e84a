"""`servetune labels`: live accuracy from the label store, and labels out to and back from annotation."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
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


@labels_app.command("export")
def export(
    out: Annotated[Path, typer.Option(help="folder to write (a new one)")],
    photos: Annotated[Path, typer.Option(help="the folder the server kept photos in (--keep-photos)")],
    labels_db: LabelsDb = DEFAULT_DB,
    export_format: Annotated[str, typer.Option(
        "--format", help="food11: OUT/<split>/<class>/ for model eval and train; label-studio: the review "
        "queue as Label Studio tasks")] = "food11",
    split: Annotated[str, typer.Option(help="food11: the split folder to write")] = "evaluation",
    every_photo: Annotated[bool, typer.Option(
        "--all", help="label-studio: every kept photo without a review label, not only the review queue")] = False,
    image_url: Annotated[str, typer.Option(
        help="label-studio: prefix of each photo's URL (Label Studio serving OUT as local files)")
    ] = "/data/local-files/?d=",
    since: Since = None,
) -> None:
    """Labelled uploads with their kept photos as a Food-11 folder, or the review queue for Label Studio."""
    from servetune.labels.export import export_food11, known_class
    from servetune.labels.label_studio import export_label_studio
    from servetune.labels.store import open_store
    from servetune.model.data import SPLITS

    if export_format not in ("food11", "label-studio"):
        raise OptionError(f"--format {export_format!r}: choose food11 or label-studio")
    if split not in SPLITS:
        raise OptionError(f"--split {split!r}: choose {', '.join(SPLITS)}")
    store = open_store(labels_db, create=False)
    try:
        uploads = store.uploads(since=parse_since(since))
    finally:
        store.close()
    if export_format == "food11":
        result = export_food11(uploads, photos, out, split)
        where = out / split
        skipped = sum(1 for u in uploads if known_class(u) is not None and u.photo_file is None)
    else:
        queue = [u for u in uploads if u.review_label is None and (u.review or every_photo)]
        result = export_label_studio(queue, photos, out, image_url)
        where = out / "tasks.json"
        skipped = result.without_photo
    total = sum(result.written.values())
    typer.echo(f"wrote {total} photos to {where}" + "".join(
        f"\n  {name:<18} {count}" for name, count in sorted(result.written.items())))
    if skipped:
        typer.echo(f"{skipped} uploads had no kept photo (serve with --keep-photos to keep them)")
    if result.missing_photo:
        typer.echo(f"{len(result.missing_photo)} kept photos were not found in {photos}, e.g. {result.missing_photo[0]}")


@labels_app.command("import")
def import_reviews(
    export_file: Annotated[Path, typer.Argument(help="Label Studio's JSON export of the tasks labels export wrote")],
    labels_db: LabelsDb = DEFAULT_DB,
) -> None:
    """Read review labels back from Label Studio into the store (all or none)."""
    from servetune.cli.errors import CommandFailed
    from servetune.labels.label_studio import classes_of, read_label_studio_export
    from servetune.labels.store import open_store

    store = open_store(labels_db, create=False)
    try:
        labels, unlabelled = read_label_studio_export(export_file, set(classes_of(store.uploads())))
        unknown = store.add_reviews([(label.key, label.label) for label in labels], time.time())
    finally:
        store.close()
    if unknown:
        raise CommandFailed(
            f"{export_file}: {len(unknown)} tasks name uploads this store does not have (e.g. {unknown[0][:12]}); "
            "nothing was imported"
        )
    typer.echo(f"imported {len(labels)} review labels; {unlabelled} tasks had no annotation")
