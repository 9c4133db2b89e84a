"""`servetune data download`: the Food-11 data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from servetune.cli.errors import OptionError

data_app = typer.Typer(help="Food-11 data.", no_args_is_help=True, rich_markup_mode=None)


@data_app.command("download")
def data_download(
    dest: Annotated[Path, typer.Option(help="folder to unpack into")] = Path("Food-11"),
    url: Annotated[str | None, typer.Option(help="where the Food-11 zip is [default: the public copy]")] = None,
    sha256: Annotated[str | None, typer.Option(help="expected SHA-256 of the zip (64 hex digits)")] = None,
    keep_zip: Annotated[bool, typer.Option(help="keep the zip next to the unpacked folders")] = False,
) -> None:
    """Download Food-11 (resumes a partial download), verify it, unpack it and show what it holds."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from servetune.model.download import FOOD11_URL, download_food11

    url = url or FOOD11_URL
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("Food-11.zip", total=None)
        result = download_food11(
            dest, url, sha256, keep_zip, lambda done, total: progress.update(task, completed=done, total=total)
        )
    typer.echo(f"downloaded {url}\nSHA-256 {result.sha256}" + ("" if sha256 else " (pass --sha256 to pin it)"))
    if result.data_root is None:
        raise OptionError(
            f"{dest}: unpacked {len(result.created)} entries but found no training/ validation/ evaluation/ folder"
        )
    typer.echo(f"Food-11 data in {result.data_root}:")
    for line in result.splits:
        typer.echo(f"  {line}")
