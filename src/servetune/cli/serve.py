"""`servetune serve`: the model over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from servetune.cli.errors import OptionError


def serve(
    model: Annotated[Path | None, typer.Option(help="model artifact (.onnx) [default: the packaged model]")] = None,
    port: Annotated[int, typer.Option(min=0, max=65535)] = 5000,
    host: Annotated[str, typer.Option(help="address to listen on")] = "0.0.0.0",
    workers: Annotated[int, typer.Option(min=1, max=64, help="server processes (>1: gunicorn)")] = 1,
    threads: Annotated[
        int | None, typer.Option(min=1, max=256, help="inference threads per process [default: CPU quota]")
    ] = None,
    sample_image: Annotated[
        Path | None, typer.Option(help="image for GET /test [default: a generated 1280x1280 JPEG]")
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(min=0.001, help="largest accepted upload in MB")] = 10.0,
    backlog: Annotated[int, typer.Option(min=0, help="images that may wait for inference before a 503")] = 64,
    ready_dir: Annotated[
        Path | None, typer.Option(help="write READY_DIR/<pid> once each process is ready")
    ] = None,
    access_log: Annotated[bool, typer.Option(help="log every request")] = False,
    holdout_fraction: Annotated[float, typer.Option(
        min=0, max=1, help="share of uploads held out: the user picks the class, the prediction is compared")
    ] = 0.0,
    labels_db: Annotated[str | None, typer.Option(
        help="label store: a SQLite file or a postgresql:// URL (or env SERVETUNE_LABELS_DB) "
        "[default: servetune-labels.db when a label feature is on]", envvar="SERVETUNE_LABELS_DB",
        show_envvar=False)
    ] = None,
    label_ttl_s: Annotated[int, typer.Option(min=10, max=7 * 86_400, help="how long a label id is valid")] = 900,
    label_rate: Annotated[int, typer.Option(min=0, help="labels per client per minute (0: no limit)")] = 120,
    review_below: Annotated[float, typer.Option(
        min=0, max=1, help="queue shown uploads whose top probability is under this for review")
    ] = 0.0,
    feedback: Annotated[bool, typer.Option(help="offer 'wrong?' feedback on shown predictions")] = False,
    keep_photos: Annotated[Path | None, typer.Option(
        help="keep held-out and review photos in this folder (for labels export)")
    ] = None,
    keep_photos_mb: Annotated[int, typer.Option(min=1, help="size quota of --keep-photos")] = 1024,
) -> None:
    """Serve the model over HTTP (the API in docs/architecture.md)."""
    from servetune.model.artifact import existing_model_path, read_spec
    from servetune.model.preprocess import ImageError, decode_image
    from servetune.serve.launch import serve_gunicorn, serve_uvicorn, threads_per_worker
    from servetune.serve.settings import ServerSettings

    if labels_db is not None:
        from servetune.labels.location import parse_location

        parse_location(labels_db)  # a bad value is refused now, not in every worker
    model_path = existing_model_path(model)
    spec = read_spec(model_path)
    if sample_image is not None:
        if not sample_image.is_file():
            raise OptionError(f"{sample_image}: no such sample image")
        try:
            decode_image(sample_image.read_bytes(), spec)
        except ImageError as err:
            raise OptionError(f"{sample_image}: unusable sample image: {err}") from None
    settings = ServerSettings(
        model_path=str(model_path.resolve()),
        sample_image=str(sample_image.resolve()) if sample_image else None,
        threads=threads_per_worker(threads, workers),
        ready_dir=str(ready_dir) if ready_dir else None,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        backlog=backlog,
        holdout_fraction=holdout_fraction,
        labels_db=labels_db,
        label_ttl_s=label_ttl_s,
        label_rate_per_min=label_rate,
        review_below=review_below,
        feedback=feedback,
        keep_photos=str(keep_photos.resolve()) if keep_photos else None,
        keep_photos_mb=keep_photos_mb,
    )
    if workers == 1:
        serve_uvicorn(settings, host, port, access_log)
    else:
        serve_gunicorn(settings, host, port, workers, access_log)
