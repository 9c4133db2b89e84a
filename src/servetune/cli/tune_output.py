"""What `servetune tune` shows: the search's progress bar, the comparison table and the closing lines (shared
by `tune`, `tune --model` and `demo`)."""

from __future__ import annotations

import typer


def run_with_progress(options):
    """The tune with a progress bar of simulated candidates and the best so far by the recommendation rule."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from servetune.tune.frontier import recommend
    from servetune.tune.pipeline import tune

    console = Console(stderr=True)
    columns = [TextColumn("search"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[best]}")]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("search", total=options.budget, best="")
        rule = options.rule()

        def on_batch(evaluations) -> None:
            feasible = [e for e in evaluations if e.feasible and e.statistics is not None]
            best = ""
            if feasible:
                s = recommend(feasible, rule).statistics
                best = (f"best: {s.memory_requested_KB / 1024:.0f} MiB, {s.cpu_requested_core:.2f} CPU, "
                        f"{s.response_time_s * 1000:.1f} ms ({len(feasible):,} feasible)")
            progress.update(task, completed=sum(1 for e in evaluations if e.statistics is not None), best=best)

        return tune(options, console, on_batch, on_searched=progress.stop)  # the bar ends before any run


def show_result(result) -> None:
    from rich.console import Console
    from rich.table import Table

    from servetune.analyze.live_accuracy import overlap_notes
    from servetune.tune.constraints import BOUNDED, RESPONSE_TIME

    table = Table("spec", "mem req MiB", "CPU req", "resp. ms", "failures", "replicas mean/max",
                  title="recommended against the baselines (simulated, full profile)")
    for name, s in [("recommended", result.recommended.statistics), *result.baselines.items()]:
        response = "n/a" if s.response_time_s is None else f"{s.response_time_s * 1000:.1f}"
        shown = f"{name} (model {result.other_models[name]})" if name in result.other_models else name
        table.add_row(shown, f"{s.memory_requested_KB / 1024:,.0f}", f"{s.cpu_requested_core:.3f}", response,
                      f"{s.failure_rate:.2%}", f"{s.mean_replicas:.2f} / {s.max_replicas}")
    Console(width=120).print(table)
    real_runs = [*result.baseline_runs, *result.verifications]
    for item in real_runs:
        typer.echo(f"verify {item.label}: {item.verdict()}{measured_text(item.measured)}")
        if accuracy := item.accuracy_text():
            typer.echo(f"  {accuracy}")
    for note in overlap_notes([(item.label, item.live) for item in real_runs]):
        typer.echo(note)
    for name, model in result.other_models.items():
        typer.echo(f"note: baseline {name} serves another model ({model}) than the recommended one: its "
                   "figures compare another model as well as another deployment")
    accuracy = result.recommended.accuracy
    accuracy_text = "not measured (cannot be ranked on accuracy)" if accuracy is None else f"{accuracy:.2%}"
    own = result.recommended_verification
    if own is not None and own.live is not None:
        accuracy_text += f" offline; live {own.live.text()} in its real runs"
    typer.echo(f"recommended: {result.recommended.candidate.label()} (accuracy {accuracy_text})")
    typer.echo(f"  {verification_text(result.recommended_verification, result.baseline_runs)}")
    typer.echo(f"  spec: {result.out / 'recommended.yaml'} (servetune run -c / servetune deploy apply)")
    typer.echo(f"  manifests: {result.out / 'recommended-manifests.yaml'} "
               f"(kubectl apply -f {result.out / 'recommended-manifests.yaml'})")
    size = len(result.front)
    typer.echo(f"front: {size} candidate{'s' if size != 1 else ''} of {len(result.evaluations):,} evaluated "
               f"in {result.seconds:.1f} s -> {result.out / 'frontier.csv'}")
    verified = bool(result.verifications or result.baseline_runs)
    for statistic in BOUNDED:
        search, verification = result.constraints, result.verified_against
        if statistic is RESPONSE_TIME or search.bound(statistic) is not None:
            text = f"{statistic.name} bound: {search.bound_text(statistic)}"
            if verified and verification.bound_text(statistic) != search.bound_text(statistic):
                text += f"; in the verification: {verification.bound_text(statistic)}"
            typer.echo(text)
    typer.echo(f"report: {result.report}")


def verification_text(verification, baseline_runs=(), names=None) -> str:
    """Whether the pick passed verification, in plain words, and which of its figures are measured; where it
    failed, the baselines run beside it that failed the same criterion (`names`: how to call a baseline run,
    by its label; 'baseline LABEL' otherwise)."""
    if verification is None:
        return "NOT verified (--verify 0, or stopped before): every figure above is simulated"
    if verification.passed:
        runs = len(verification.measured)
        return (f"verified: passed in {runs} real run{'s' if runs != 1 else ''}{measured_text(verification.measured)}"
                "; the table above is simulated")
    return (f"FAILED verification ({verification.verdict().removeprefix('failed verification: ')}): no verified "
            f"candidate passed; its figures above are simulated{failed_as_well(verification, baseline_runs, names)}")


def failed_as_well(verification, baseline_runs, names=None) -> str:
    """'; your pair failed it as well: failure rate 7.69% (run 1 of 2) > 0.00%' for each baseline that broke,
    in its own real runs beside the pick's, a criterion the pick broke: then the bar is what failed, not only
    the pick ('' where none did)."""
    broken = {violation.constraint for violation in verification.violations}
    clauses = []
    for run in baseline_runs:
        same = [violation.message for violation in run.violations if violation.constraint in broken]
        if same:
            who = (names or {}).get(run.label, f"baseline {run.label}")
            clauses.append(f"; {who} failed it as well: {'; '.join(same)}")
    return "".join(clauses)


def measured_text(measured) -> str:
    """': measured 224 MiB, 0.933 CPU, 39.5 ms, failures 0.00%', over several runs each figure's mean with
    its min-max range."""
    from servetune.tune.constraints import CPU_REQUESTED, MEMORY_REQUESTED, RESPONSE_TIME
    from servetune.tune.repeats import spread

    if not measured:
        return ""

    def figure(read, fmt: str) -> str:
        return spread([read(s) for s in measured]).text(fmt)

    runs = f" (mean (min-max) of {len(measured)} runs)" if len(measured) > 1 else ""
    return (f": measured{runs} {figure(lambda s: s.memory_requested_KB / 1024, MEMORY_REQUESTED.fmt)} MiB, "
            f"{figure(lambda s: s.cpu_requested_core, CPU_REQUESTED.fmt)} CPU, "
            f"{figure(lambda s: (s.response_time_s or 0) * 1000, RESPONSE_TIME.fmt)} ms, "
            f"failures {figure(lambda s: s.failure_rate, '.2%')}")
