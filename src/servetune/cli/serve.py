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
) -> None:
    """Serve the model over HTTP (the API in docs/architecture.md)."""
    from servetune.model.artifact import existing_model_path, read_spec
    from servetune.model.preprocess import ImageError, decode_image
    from servetune.serve.launch import serve_gunicorn, serve_uvicorn, threads_per_worker
    from servetune.serve.settings import ServerSettings

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
    )
    if workers == 1:
        serve_uvicorn(settings, host, port, access_log)
    else:
        serve_gunicorn(settings, host, port, workers, access_log)
