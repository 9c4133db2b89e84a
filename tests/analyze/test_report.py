from __future__ import annotations

import base64
import json
import re

from PIL import Image

from analyze.run_folders import handmade_run, realistic_run
from servetune.analyze.report import headline_rows, write_report
from servetune.analyze.stats import summarize
from servetune.config import RunSummary


def test_report_is_self_contained_with_every_plot(tmp_path):
    run = realistic_run(tmp_path / "lite0-hpa")
    page = write_report(run).page
    assert page == run / "report.html"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text  # no CDN, nothing fetched
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 3
    for encoded in images:
        (tmp_path / "decoded.png").write_bytes(base64.b64decode(encoded))
        with Image.open(tmp_path / "decoded.png") as image:
            assert image.format == "PNG" and image.width > 800
    for name in ("report_resources.png", "report_phases.png", "report_latency.png"):
        assert (run / name).stat().st_size > 10_000
    summary = summarize(run)
    assert f"{summary.transaction_rate:,.3f} /s" in text
    assert "20 users, d100" in text and "30 users, d1" in text


def test_markdown_report_links_its_plots_and_summary_json_round_trips(tmp_path):
    run = realistic_run(tmp_path / "run")
    write_report(run)
    markdown = (run / "report.md").read_text()
    for name in re.findall(r"\]\((report_\w+\.png)\)", markdown):
        assert (run / name).is_file()
    assert markdown.count("](report_") == 3
    assert "| memory requested (mean mem_req_KB) |" in markdown
    assert RunSummary.model_validate_json((run / "summary.json").read_text()) == summarize(run)


def test_report_without_request_log_says_so(tmp_path):
    run = handmade_run(tmp_path / "run")
    (run / "requests.csv").unlink()
    text = write_report(run).page.read_text()
    assert "No requests.csv" in text
    assert text.count("data:image/png") == 2


def test_headline_rows_are_the_four_statistics_then_accuracy():
    summary = RunSummary(
        run_dir="r", name="r", memory_requested_KB=262144, memory_used_KB=102400, transaction_rate=8.5,
        response_time_s=0.25, cpu_requested_core=0.5, cpu_used_core=0.2, cpu_limit_core=1.0,
        memory_limit_KB=524288, replica_seconds=300, mean_replicas=1.5, max_replicas=3, evaluation_s=200,
        runs=15, transactions=1700, okay=1700, failed=0, failure_rate=0.0, accuracy=0.5,
        accuracy_source="run.json", model="tiny",
    )
    rows = dict(headline_rows(summary, "terminal"))
    assert list(rows)[:5] == ["memory requested", "memory used", "transaction rate", "response time", "accuracy"]
    assert rows["memory requested"].startswith("256 MiB") and rows["memory used"].startswith("100 MiB")
    assert rows["transaction rate"].startswith("8.50 /s") and rows["response time"].startswith("250.0 ms")
    assert rows["accuracy"] == "50.00% (tiny)"


def test_replica_restarts_reach_summary_json_and_the_report(tmp_path):
    run = handmade_run(tmp_path / "run")
    (run / "run.json").write_text(json.dumps({"restarts": 3, "restart_reasons": {"OOMKilled": 2, "Error (SIGKILL)": 1}}))
    write_report(run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["replica_restarts"] == 3
    assert summary["restart_reasons"] == {"OOMKilled": 2, "Error (SIGKILL)": 1}
    assert "| replica restarts | 3 (Error (SIGKILL) x1, OOMKilled x2) |" in (run / "report.md").read_text()
    assert "3 (Error (SIGKILL) x1, OOMKilled x2)" in (run / "report.html").read_text()
    (run / "run.json").write_text("{}")  # a run folder from elsewhere: not known, not zero
    write_report(run)
    assert json.loads((run / "summary.json").read_text())["replica_restarts"] is None
    assert "| replica restarts | n/a |" in (run / "report.md").read_text()
