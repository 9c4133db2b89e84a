from __future__ import annotations

from analyze.run_folders import handmade_run, realistic_run
from servetune.analyze.compare import pareto_optimal, write_comparison
from servetune.analyze.stats import summarize


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
