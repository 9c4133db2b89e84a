from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from analyze.run_folders import RESOURCE_HEADER, SIEGE_HEADER, handmade_run, realistic_run
from environment import require_tool
from onnx_models import tiny_artifact
from servetune.analyze.report import statistics_rows
from servetune.analyze.stats import AnalysisError, summarize


def test_four_reference_statistics_on_a_handmade_run(tmp_path):
    summary = summarize(handmade_run(tmp_path / "run"))
    assert summary.memory_requested_KB == pytest.approx(393216)
    assert summary.memory_used_KB == pytest.approx(170000)
    assert summary.transaction_rate == pytest.approx(38 / 30)  # the empty third run still counts its 10 s
    assert summary.response_time_s == pytest.approx((10 * 0.5 + 28 * 0.2) / 38)  # not the column mean 0.35
    assert summary.evaluation_s == pytest.approx(30)
    assert (summary.runs, summary.transactions, summary.okay, summary.failed) == (3, 40, 38, 7)


def test_usage_not_measured_is_left_out_and_none_measured_is_n_a(tmp_path):
    run = handmade_run(tmp_path / "run")
    states = run / "replica_states.csv"
    # The third sample's second replica had no metrics yet: its 230000 KB counts only the first replica.
    states.write_text("time,ready,starting,pending,terminating,usage_unmeasured\n"
                      "2026-11-29 05:00:00,1,0,0,0,0\n2026-11-29 05:00:05,1,0,0,0,0\n"
                      "2026-11-29 05:00:10,1,1,0,0,1\n2026-11-29 05:00:15,2,0,0,0,0\n")
    summary = summarize(run)
    assert summary.memory_used_KB == pytest.approx((100000 + 110000 + 240000) / 3)
    assert summary.cpu_used_core == pytest.approx((0.2 + 0.4 + 1.1) / 3)
    assert (summary.usage_samples, summary.samples) == (3, 4)
    assert summary.memory_requested_KB == pytest.approx(393216)  # requests are known for every sample
    rows = dict(statistics_rows(summary))
    assert rows["memory used (mean mem_use_KB)"] == "150,000 KB (over the 3 of 4 samples that measured every replica)"
    states.write_text("time,ready,starting,pending,terminating,usage_unmeasured\n" + "".join(
        f"2026-11-29 05:00:{second:02d},1,0,0,0,1\n" for second in (0, 5, 10, 15)))
    summary = summarize(run)
    assert summary.memory_used_KB is None and summary.cpu_used_core is None
    rows = dict(statistics_rows(summary))
    assert rows["memory used (mean mem_use_KB)"] == "n/a (not measured in any of 4 samples)"
    assert rows["CPU used (mean)"].startswith("n/a")


def test_resources_percentiles_and_failures_on_a_handmade_run(tmp_path):
    summary = summarize(handmade_run(tmp_path / "run"))
    assert summary.cpu_requested_core == pytest.approx(0.75)
    assert summary.cpu_used_core == pytest.approx(0.65)
    assert summary.replica_seconds == pytest.approx(1 * 5 + 1 * 5 + 2 * 5 + 2 * 5)
    assert (summary.mean_replicas, summary.max_replicas) == (1.5, 2)
    # 10 OKAY latencies 0.1..1.0 (linear interpolation); the 503 and the connection error are failures.
    assert summary.latency_p50_s == pytest.approx(0.55)
    assert summary.latency_p95_s == pytest.approx(0.955)
    assert summary.latency_p99_s == pytest.approx(0.991)
    assert summary.failure_rate == pytest.approx(2 / 12)
    assert summary.requests == 12


def test_phases_follow_the_profile(tmp_path):
    first, second = summarize(handmade_run(tmp_path / "run")).phases
    assert (first.label, first.runs, first.okay, first.seconds) == ("20 users, d100", 1, 10, 10)
    assert first.transaction_rate == pytest.approx(1.0) and first.response_time_s == pytest.approx(0.5)
    assert first.offered_rate == pytest.approx(20 / 50)
    assert first.mean_replicas == pytest.approx(4 / 3)  # samples at :00, :05, :10 fall in the first run
    assert (second.label, second.runs, second.okay, second.failed) == ("30 users, d1", 2, 28, 7)
    assert second.transaction_rate == pytest.approx(28 / 20) and second.response_time_s == pytest.approx(0.2)
    assert second.failure_rate == pytest.approx(1.0)  # its two per-request records both failed


def test_without_requests_or_profile_failure_rate_comes_from_the_siege_log(tmp_path):
    run = handmade_run(tmp_path / "run")
    (run / "requests.csv").unlink()
    (run / "load_profile.yaml").unlink()
    summary = summarize(run)
    assert summary.failure_rate == pytest.approx(7 / 45)  # Failed / (OKAY + Failed)
    assert summary.latency_p50_s is None and summary.requests is None
    assert [p.label for p in summary.phases] == ["phase 1", "phase 2", "phase 3"]


def test_reads_the_reference_monitors_elapsed_seconds(tmp_path):
    run = handmade_run(tmp_path / "run")
    (run / "resource_usage.csv").write_text(
        RESOURCE_HEADER + "0.0,1,0.5,262144,1,524288,0.2,100000\n5.02,3,1.5,786432,3,1572864,0.4,300000\n"
    )
    summary = summarize(run)
    assert summary.memory_requested_KB == pytest.approx(524288)
    assert summary.replica_seconds == pytest.approx(1 * 5.02 + 3 * 5.02)
    assert summary.phases[0].mean_replicas is None  # no wall clock: cannot be placed in a run


def test_accuracy_from_run_json_or_the_models_metadata(tmp_path):
    run = handmade_run(tmp_path / "run")
    assert summarize(run).accuracy is None
    tiny_artifact(run / "model.onnx")
    summary = summarize(run)
    assert summary.model and summary.accuracy_source.startswith("model.onnx")
    assert summary.accuracy is not None and 0 <= summary.accuracy <= 1
    (run / "run.json").write_text(json.dumps({"name": "lite0 2 replicas", "accuracy": 0.8125}))
    summary = summarize(run)
    assert (summary.accuracy, summary.accuracy_source, summary.name) == (0.8125, "run.json", "lite0 2 replicas")


@pytest.mark.parametrize(
    ("host_cpu", "expected"),
    [
        ({"cores": 2, "busy_cores": 1.4, "run_cores": 0.9, "others_cores": 0.5, "seconds": 30}, (0.5, 2)),
        ({"others_cores": 0.25}, (0.25, None)),
        (None, (None, None)),
    ],
)
def test_what_other_processes_took_comes_from_run_json(tmp_path, host_cpu, expected):
    run = handmade_run(tmp_path / "run")
    (run / "run.json").write_text(json.dumps({"name": "shared machine", "host_cpu": host_cpu}))
    summary = summarize(run)
    assert (summary.others_cores, summary.machine_cores) == expected
    assert summary.others_counts is None  # an older run.json does not say what it counts
    report_rows = dict(statistics_rows(summary))
    assert ("CPU other processes took during the load" in report_rows) == (expected[0] is not None)


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("resource_usage.csv", RESOURCE_HEADER + "2026-11-29 05:00:00,1,0.5\n", r"resource_usage.csv: line 2: 3 fields"),
        ("resource_usage.csv", RESOURCE_HEADER, r"resource_usage.csv: no samples"),
        ("load_output.csv", SIEGE_HEADER + "2026-11-29 05:00:10,  x,  10.00,  0,  0.5,  1,  0,  0.5,  10,  0\n",
         r"load_output.csv: line 2: Trans 'x' is not a number"),
        ("load_output.csv", SIEGE_HEADER, r"load_output.csv: no load runs"),
        ("load_output.csv", SIEGE_HEADER + "2026-11-29 05:00:10,  10,  inf,  0,  0.5,  1,  0,  0.5,  10,  0\n",
         r"load_output.csv: line 2: Elap Time inf is not a finite number"),
        ("load_output.csv", SIEGE_HEADER + "2026-11-29 05:00:10,  0,  nan,  0,  -nan,  0,  0,  -nan,  0,  3\n",
         r"load_output.csv: line 2: Elap Time nan is not a finite number"),
        ("load_output.csv", SIEGE_HEADER + "2026-11-29 05:00:10,  10,  10.00,  0,  nan,  1,  0,  0.5,  10,  0\n",
         r"load_output.csv: line 2: Resp Time nan is not a finite number"),
        ("load_output.csv", SIEGE_HEADER + "2026-11-29 05:00:10,  10,  10.00,  0,  0.5,  1,  inf,  0.5,  10,  0\n",
         r"load_output.csv: line 2: Throughput inf is not a finite number"),
        ("load_output.csv", SIEGE_HEADER + "2026-11-29 05:00:10,  10,  10.00,  0,  0.5,  -inf,  0,  0.5,  10,  0\n",
         r"load_output.csv: line 2: Trans Rate -inf is not a finite number"),
        ("load_output.csv", SIEGE_HEADER + "2026-11-29 05:00:10,  10,  10.00,  nan,  0.5,  1,  0,  0.5,  10,  0\n",
         r"load_output.csv: line 2: Data Trans nan is not a finite number"),
        ("load_output.csv", SIEGE_HEADER + "2026-11-29 05:00:10,  10,  10.00,  0,  0.5,  1,  0,  inf,  10,  0\n",
         r"load_output.csv: line 2: Concurrent inf is not a finite number"),
        ("requests.csv", "start,latency_s,status,bytes,phase,replica\n1.0,0.2,200\n", r"requests.csv: line 2"),
        ("run.json", "{not json", r"run.json: not readable JSON"),
        # run.json read through its typed record: a field of the wrong kind is named, not skipped
        ("run.json", '{"host_cpu": {"others_cores": -1, "cores": 2}}',
         r"run.json: not a run record: host_cpu.others_cores: Input should be greater than or equal to 0"),
        ("run.json", '{"host_cpu": {"others_cores": "lots"}}', r"run.json: not a run record: host_cpu.others_cores"),
        ("run.json", '{"host_cpu": "0.5"}', r"run.json: not a run record: host_cpu: Input should be a valid dict"),
        ("run.json", '{"accuracy": "high"}', r"run.json: not a run record: accuracy: Input should be a valid number"),
        ("load_profile.yaml", "phases: [{users: 0}]\nname: x\n", r"load_profile.yaml: phases\[0\].users"),
    ],
)
def test_malformed_inputs_name_the_file_and_line(tmp_path, file, content, message):
    run = handmade_run(tmp_path / "run")
    (run / file).write_text(content)
    with pytest.raises(AnalysisError, match=message):
        summarize(run)


def test_missing_folder_or_files_are_clear_errors(tmp_path):
    with pytest.raises(AnalysisError, match="no such run folder"):
        summarize(tmp_path / "absent")
    run = handmade_run(tmp_path / "run")
    (run / "load_output.csv").unlink()
    with pytest.raises(AnalysisError, match=r"load_output.csv: missing"):
        summarize(run)


def test_realistic_run_is_consistent(tmp_path):
    summary = summarize(realistic_run(tmp_path / "run"))
    assert summary.runs == 30 and len(summary.phases) == 9
    assert summary.evaluation_s == pytest.approx(1800, abs=2)
    assert summary.transaction_rate == pytest.approx(summary.okay / summary.evaluation_s)
    assert 1 <= summary.mean_replicas <= summary.max_replicas <= 3
    assert summary.latency_p50_s < summary.latency_p95_s < summary.latency_p99_s
    busiest = max(summary.phases, key=lambda p: p.transaction_rate)
    quietest = min(summary.phases, key=lambda p: p.transaction_rate)
    assert busiest.delay == 1 and quietest.delay == 100


class SlowHandler(BaseHTTPRequestHandler):
    """Answers every GET after 50 ms and counts what it answered."""

    protocol_version = "HTTP/1.1"
    answered = 0
    lock = threading.Lock()

    def do_GET(self):
        time.sleep(0.05)
        body = b'{"prediction": "Bread"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with SlowHandler.lock:
            SlowHandler.answered += 1

    def log_message(self, *args):
        pass


def test_statistics_of_a_log_written_by_real_siege(tmp_path):
    siege = require_tool("siege")
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/test"
    run = tmp_path / "run"
    run.mkdir()
    (run / "resource_usage.csv").write_text(RESOURCE_HEADER + "0,1,0.5,262144,1,524288,0.1,90000\n")
    try:
        for users, mark in ((2, "low"), (4, "high")):
            subprocess.run([siege, "-c", str(users), "-d", "0", "-t", "2S", "-q", f"--log={run / 'load_output.csv'}",
                            "-m", mark, url], check=True, capture_output=True, timeout=30,
                           env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    finally:
        server.shutdown()
        server.server_close()
    assert "**** low ****" in (run / "load_output.csv").read_text()  # siege's padded header and marks
    summary = summarize(run)
    assert summary.runs == 2
    # Every OKAY siege logged is a request this server answered (siege may abandon a few at its deadline).
    assert 0 <= SlowHandler.answered - summary.okay <= 6
    assert summary.okay > 40
    assert summary.transaction_rate == pytest.approx(summary.okay / summary.evaluation_s)
    assert 0.045 <= summary.response_time_s <= 0.08  # the server's 50 ms, at siege's 2-decimal resolution
    assert summary.failure_rate == 0


def test_a_run_without_transactions_reads_as_siege_means_it(tmp_path):
    """siege's -nan/inf for a run that served nothing: 0 OKAY and no response time, not an error or 'nan ms'."""
    run = handmade_run(tmp_path / "run")
    (run / "load_output.csv").write_text(
        SIEGE_HEADER
        + "2026-11-29 05:00:10,     10,      10.00,           0,       0.50,        1.00,        0.00,        0.50,      10,       0\n"
        + "2026-11-29 05:00:20,      0,      10.00,           0,       -nan,        -nan,        -nan,       -nan,       0,       5\n"
        + "2026-11-29 05:00:30,      0,       0.00,           0,        inf,         inf,         inf,        inf,       0,       2\n"
        # too short for siege's clock: per-second figures divide by zero, Resp Time is real
        + "2026-11-29 05:00:40,      6,       0.00,           0,       0.01,         inf,         inf,       -nan,       6,       0\n"
    )
    (run / "requests.csv").unlink()
    (run / "load_profile.yaml").unlink()
    summary = summarize(run)
    assert summary.response_time_s == pytest.approx((10 * 0.5 + 6 * 0.01) / 16)
    assert summary.transaction_rate == pytest.approx(16 / 20)
    assert summary.failure_rate == pytest.approx(7 / 23)
