"""`servetune tune --model FILE --deployment deployment.yaml --data DIR --out OUT`: the user's own model
through the whole loop (tune/own_model.py), with a progress bar on every long step and closing lines that
say what was measured, what simulated, and what to run next."""

from __future__ import annotations

import typer


def tune_own_model(own, options) -> None:
    """Variants, calibrations, the search, the verification against their pair, the chosen files."""
    from rich.console import Console
    from rich.table import Table

    from servetune.cli.options import steps_progress
    from servetune.cli.tune_output import run_with_progress, show_result, verification_text
    from servetune.tune.chosen import write_chosen
    from servetune.tune.own_model import VARIANT_HEADER, chance_note, prepare

    with steps_progress() as progress:
        prepared = prepare(own, options, progress, step=lambda text: progress.console.print(text, highlight=False))
    console = Console(width=140)
    table = Table(*VARIANT_HEADER, title=f"your model's variants (accuracy on {own.data / 'evaluation'}, measured; "
                  f"CPU, memory and start-up calibrated on {prepared.calibrated_on})")
    for row in prepared.rows:
        table.add_row(*row.cells())
    console.print(table)
    for note in prepared.notes:
        typer.echo(f"note: {note}")
    if prepared.accuracy_bound is not None:
        typer.echo(f"accuracy bound: at least {prepared.accuracy_bound:.2%} (your model's less --max-accuracy-loss)")
    yours = prepared.options.labels()[str(prepared.yours)]
    typer.echo(f"your pair (your deployment with your model) -> {prepared.yours}, '{yours}' below")
    result = run_with_progress(prepared.options)
    show_result(result)
    spec = result.recommended_spec
    chosen = write_chosen(result.out, spec, prepared.documents, own.deployment)
    typer.echo(f"\nyour deployment with {chosen_numbers(result.recommended_verification)} -> {chosen.manifest} "
               f"(diff: {chosen.diff_file})")
    typer.echo(chosen.diff.rstrip() or "(no change)")
    for note in chosen.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"model: {chosen.model} ({spec.model})")
    typer.echo(f"build the image with the chosen model ({chosen.dockerfile}) and deploy:")
    for command in chosen.build_commands():
        typer.echo(f"  {command}")
    typer.echo("figures: the variant table's accuracy is measured; the tables of the search are simulated; the "
               "'verify' lines are measured in real runs on the verification backend")
    if note := chance_note(prepared.rows[0].variant):  # said again last: the note among the variants is missed
        typer.echo(f"note: {note}")
    verdict = verification_text(result.recommended_verification, result.baseline_runs, {yours: "your pair"})
    typer.echo(f"the pick: {verdict}")  # the last word: did it pass


def chosen_numbers(verification) -> str:
    """What the chosen manifest holds: the pick's numbers, and whether they passed verification."""
    if verification is None:
        return "the chosen numbers and image (not verified: by simulation only)"
    if verification.passed:
        return "the chosen numbers and image (verified)"
    return "the numbers and image of the simulator's best, which did NOT pass verification"
