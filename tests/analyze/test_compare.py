from __future__ import annotations

import json

from typer.testing import CliRunner

from analyze.run_folders import handmade_run, realistic_run
from servetune.analyze.compare import comparison_table, live_notes, pareto_optimal, write_comparison
from servetune.analyze.stats import summarize
from servetune.cli import app


def test_pareto_front_by_hand(tmp_path):
    base = summarize(handmade_run(tmp_path / "run"))

    def run(accuracy, memory, cpu, response):
        return base.model_copy(update={"accuracy": accuracy, "memory_requested_KB": memory,
                                       "cpu_requested_core": cpu, "response_time_s": response})

    runs = [
        run(0.80, 100, 1.0, 0.2),  # 0 optimal
        run(0.80, 200, 1.0, 0.2),  # 1 dominated by 0 (more memory, nothing better)
        run(0.90, 300, 2.0, 0.5),  # 2 optimal: the most accurate
        run(None, 50, 0.5, 0.1),  # 3 optimal: cheapest and fastest, accuracy unknown
        run(0.80, 100, 1.0, 0.2),  # 4 equal to 0: neither dominates the other
        run(0.85, 100, 1.0, None),  # 5 no OKAY answer at all: worst response time; beats 0 on accuracy only
        run(0.70, 300, 2.0, 0.6),  # 6 dominated by 2
    ]
    assert pareto_optimal(runs) == {0, 2, 3, 4, 5}


def test_comparison_files_mark_the_pareto_runs(tmp_path):
    small = realistic_run(tmp_path / "lite0-small", cpu_per_replica=0.5, accuracy=0.78, seed=2)
    big = realistic_run(tmp_path / "lite2-big", cpu_per_replica=1.0, service_s=0.3, accuracy=0.86, seed=3)
    worse = realistic_run(tmp_path / "lite2-worse", cpu_per_replica=1.5, service_s=0.6, accuracy=0.86, seed=4)
    summaries, optimal, page = write_comparison([small, big, worse], tmp_path / "out")
    assert [s.name for s in summaries] == ["lite0-small", "lite2-big", "lite2-worse"]
    assert optimal == {0, 1}
    assert (tmp_path / "out" / "comparison.png").stat().st_size > 10_000
    markdown = (tmp_path / "out" / "comparison.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| lite")]
    assert [row.split("|")[2].strip() for row in rows] == ["yes", "yes", ""]
    assert page.read_text().count("<tr class=mark>") == 2


def with_live_accuracy(run_dir, correct: int, n: int) -> None:
    """run.json's live_accuracy as `servetune run --labelling-users` writes it."""
    from servetune.labels.stats import wilson_interval

    record = json.loads((run_dir / "run.json").read_text())
    record["live_accuracy"] = {"accuracy": correct / n, "correct": correct, "n": n,
                               "wilson_95": list(wilson_interval(correct, n)), "source": "held-out labels"}
    (run_dir / "run.json").write_text(json.dumps(record))


def test_comparison_says_which_live_accuracy_intervals_overlap(tmp_path):
    runs = [realistic_run(tmp_path / name, accuracy=0.7, seed=seed) for name, seed in (("a", 1), ("b", 2), ("c", 3))]
    for run, correct in zip(runs, (176, 140, 172), strict=True):  # 70.4 %, 56 %, 68.8 % of 250
        with_live_accuracy(run, correct, 250)
    plain = realistic_run(tmp_path / "plain", accuracy=0.7, seed=4)
    summaries, _, page = write_comparison([*runs, plain], tmp_path / "out")
    notes = live_notes(summaries)
    assert len(notes) == 3  # every pair that measured it; the run without labels is in none
    a_b, a_c, b_c = notes
    assert a_b == ("live accuracy of a and b: the 95 % intervals do not overlap: a (70.40% (95 % Wilson "
                   "64.5%..75.7%, n=250)) is more accurate than b (56.00% (95 % Wilson 49.8%..62.0%, n=250)) on "
                   "these labels")
    assert a_c.startswith("live accuracy of a and c: the 95 % intervals overlap (") and "do not tell" in a_c
    assert "do not overlap: c (68.80%" in b_c and "more accurate than b" in b_c
    assert a_b in (tmp_path / "out" / "comparison.md").read_text()
    assert "do not overlap: a (70.40%" in page.read_text()
    terminal = CliRunner().invoke(app, ["compare", str(runs[0]), str(runs[1]), "--out", str(tmp_path / "cli")],
                                  env={"COLUMNS": "400"})
    assert terminal.exit_code == 0 and a_b in " ".join(terminal.output.split()), terminal.output


def with_live_accuracy_and_states(run_dir, *, pending_from: int, unmeasured_every: int):
    """Give a realistic run what a live-accuracy run on Kubernetes records: run.json's live_accuracy and a
    replica_states.csv whose samples from `pending_from` on have a replica Pending, and every
    `unmeasured_every`-th sample a replica not measured yet."""
    record = json.loads((run_dir / "run.json").read_text())
    record["live_accuracy"] = {"accuracy": 0.704, "correct": 176, "n": 250, "wilson_95": [0.657, 0.747],
                               "source": "held-out labels of 4 labelling users (photos)"}
    (run_dir / "run.json").write_text(json.dumps(record))
    times = [line.split(",")[0] for line in (run_dir / "resource_usage.csv").read_text().splitlines()[1:]]
    rows = [f"{t},1,0,{int(i >= pending_from)},0,{int(i % unmeasured_every == 0)}\n" for i, t in enumerate(times)]
    (run_dir / "replica_states.csv").write_text("time,ready,starting,pending,terminating,usage_unmeasured\n"
                                               + "".join(rows))
    return len(times), len(times) - len(range(0, len(times), unmeasured_every))


def test_comparison_shows_live_accuracy_pending_time_and_usage_coverage(tmp_path):
    live = realistic_run(tmp_path / "live", cpu_per_replica=0.5, accuracy=0.69, seed=2)
    samples, measured = with_live_accuracy_and_states(live, pending_from=300, unmeasured_every=4)
    plain = realistic_run(tmp_path / "plain", cpu_per_replica=1.0, accuracy=0.86, seed=3)
    summaries, optimal, page = write_comparison([live, plain], tmp_path / "out")
    columns, rows = comparison_table(summaries, optimal)
    by_run = {row[0]: dict(zip(columns, row, strict=True)) for row in rows}
    assert columns.index("live accuracy") == columns.index("accuracy") + 1
    assert by_run["live"]["accuracy"] == "69.00%"  # the offline figure stays what it was
    assert by_run["live"]["live accuracy"] == "live 70.40% (95 % Wilson 65.7%..74.7%, n=250)"
    assert by_run["plain"]["live accuracy"] == "n/a"
    assert by_run["live"]["mem used KB"].endswith(f" (measured in {measured} of {samples} samples)")
    assert by_run["live"]["CPU used"].endswith(f" (measured in {measured} of {samples} samples)")
    assert "samples" not in by_run["plain"]["mem used KB"]  # measured in every sample: as before
    waited = by_run["live"]["waited for capacity"]
    assert waited.startswith("up to 1 waiting for capacity (Pending), ") and waited.endswith(" replica-seconds in all")
    assert by_run["plain"]["waited for capacity"] == "n/a"  # no replica_states.csv: not recorded
    markdown = (tmp_path / "out" / "comparison.md").read_text()
    assert "| live accuracy |" in markdown and "live 70.40% (95 % Wilson 65.7%..74.7%, n=250)" in markdown
    assert "live accuracy: held-out user labels measured during the run" in markdown
    assert "waiting for capacity" in page.read_text()
    terminal = CliRunner().invoke(app, ["compare", str(live), str(plain), "--out", str(tmp_path / "cli")],
                                  env={"COLUMNS": "400"})
    assert terminal.exit_code == 0, terminal.output
    assert "live accuracy" in terminal.output and "waited for capacity" in terminal.output
    assert "held-out user labels measured during the run" in terminal.output


def test_comparison_without_live_accuracy_or_states_keeps_its_columns(tmp_path):
    runs = [realistic_run(tmp_path / name, accuracy=0.8, seed=seed) for name, seed in (("a", 1), ("b", 2))]
    summaries, optimal, _ = write_comparison(runs, tmp_path / "out")
    columns, _ = comparison_table(summaries, optimal)
    assert "live accuracy" not in columns and "waited for capacity" not in columns
