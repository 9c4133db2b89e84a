"""The built-in driver against a loopback server that records when each request arrived, and how."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import threading
import time

import pytest

from environment import require_tool
from servetune.config import LoadPhase, LoadProfile
from servetune.load.driver import LoadOptions, check_profile, run_load, run_load_test
from servetune.load.request_log import read_request_log
from servetune.load.siege import read_siege_log
from servetune.load.target import TargetError


def profile_of(*phases: LoadPhase) -> LoadProfile:
    return LoadProfile(name="test", phases=list(phases))


def quiet(**kwargs) -> LoadOptions:
    return LoadOptions(progress=False, seed=7, **kwargs)


def test_open_loop_without_an_arrival_rate_is_refused_before_any_request():
    profile = profile_of(LoadPhase(users=2, delay=1), LoadPhase(users=2, delay=0))
    check_profile(profile, quiet())  # closed loop: users without think time are fine
    with pytest.raises(TargetError, match=r"^phase 2: open-loop mode needs `rate` when delay is 0$"):
        check_profile(profile, quiet(mode="open"))


def test_all_users_start_together_on_their_own_connections(tmp_path, recording_server):
    rows = run_load_test(profile_of(LoadPhase(users=8, delay=30, duration_s=1.0)), recording_server.url, tmp_path,
                         quiet())  # fmt: skip
    first = recording_server.arrivals[:8]
    assert len(recording_server.arrivals) >= 8
    assert max(a.at for a in first) - min(a.at for a in first) < 0.2
    assert len({a.connection for a in first}) == 8
    assert all(a.method == "GET" and a.path == "/test" for a in first)
    assert all(a.headers["connection"] == "close" for a in recording_server.arrivals)
    assert rows[0].trans == len(read_request_log(tmp_path / "requests.csv"))


def test_think_times_are_whole_seconds_and_not_in_response_time(tmp_path, recording_server):
    recording_server.delay_s = 0.05
    rows = run_load_test(profile_of(LoadPhase(users=1, delay=2, duration_s=5.0)), recording_server.url, tmp_path,
                         quiet())  # fmt: skip
    arrivals = [a.at for a in recording_server.arrivals]
    assert len(arrivals) >= 3
    for earlier, later in itertools.pairwise(arrivals):
        pause = later - earlier - 0.05  # the answer took 0.05 s, the rest is think time
        assert round(pause) in (0, 1, 2)
        assert abs(pause - round(pause)) < 0.04
    row = rows[0]
    assert 0.05 <= row.resp_time < 0.1  # siege excludes the delay from response time
    assert row.concurrent < 0.5


def test_keep_alive_reuses_one_connection_per_user(tmp_path, recording_server):
    run_load_test(profile_of(LoadPhase(users=2, delay=0, duration_s=0.5)), recording_server.url, tmp_path,
                  quiet(keep_alive=True))  # fmt: skip
    assert len(recording_server.arrivals) > 20
    assert recording_server.connections == 2
    assert all(a.headers["connection"] == "keep-alive" for a in recording_server.arrivals)


def test_okay_and_failed_follow_siege(tmp_path, recording_server):
    recording_server.responses = [200, 404, 500, 302]
    rows = run_load_test(profile_of(LoadPhase(users=1, delay=0, duration_s=0.5)), recording_server.url, tmp_path,
                         quiet())  # fmt: skip
    records = read_request_log(tmp_path / "requests.csv")
    statuses = [r.status for r in records]
    assert {200, 404, 500, 302} <= set(statuses)
    row = rows[0]
    assert row.okay == statuses.count(200) + statuses.count(302)
    assert row.trans == len(statuses) - statuses.count(500)
    assert row.failed == statuses.count(500)
    assert {r.replica for r in records} <= {"testhost:0", "testhost:1", "testhost:2"}
    assert len({r.replica for r in records}) == 3


@pytest.mark.parametrize("status", [200, 404, 503])
def test_same_classification_as_real_siege(tmp_path, recording_server, status):
    siege = require_tool("siege")
    recording_server.responses = [status]
    log = tmp_path / "siege.log"
    subprocess.run([siege, "-q", "-c", "2", "-r", "3", f"--log={log}", f"{recording_server.url}/test"],
                   check=True, capture_output=True, timeout=60, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})  # fmt: skip
    theirs = read_siege_log(log)[0]
    ours = run_load_test(profile_of(LoadPhase(users=2, delay=0, duration_s=0.3)), recording_server.url,
                         tmp_path / "ours", quiet())[0]  # fmt: skip
    assert (ours.trans > 0, ours.okay > 0, ours.failed > 0) == (
        theirs.trans > 0,
        theirs.okay > 0,
        theirs.failed > 0,
    )


def test_connection_refused_counts_failed(tmp_path):
    rows = run_load_test(profile_of(LoadPhase(users=2, delay=0.1, duration_s=0.5)), "http://127.0.0.1:9", tmp_path,
                         quiet())  # fmt: skip
    assert rows[0].trans == 0 and rows[0].failed > 0
    assert all(r.status == 0 for r in read_request_log(tmp_path / "requests.csv"))


def test_one_log_row_per_run_flushed_as_it_ends(tmp_path, recording_server):
    profile = profile_of(
        LoadPhase(users=2, delay=1, duration_s=0.4, repeats=2), LoadPhase(users=3, delay=0, duration_s=0.3)
    )
    rows = run_load_test(profile, recording_server.url, tmp_path, quiet())
    assert len(rows) == 3
    logged = read_siege_log(tmp_path / "load_output.csv")
    assert [r.trans for r in logged] == [r.trans for r in rows]
    assert [round(r.elap_time, 1) for r in logged] == [0.4, 0.4, 0.3]
    phases = {r.phase for r in read_request_log(tmp_path / "requests.csv")}
    assert phases == {0, 1}
    assert (tmp_path / "load_profile.yaml").exists()


def test_stop_event_ends_the_run_and_keeps_its_row(tmp_path, recording_server):
    stop = threading.Event()
    profile = profile_of(LoadPhase(users=3, delay=0.2, duration_s=20, repeats=3))
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(
            rows=run_load_test(profile, recording_server.url, tmp_path, quiet(), stop)
        )
    )
    began = time.perf_counter()
    thread.start()
    time.sleep(1.0)
    stop.set()
    thread.join(10)
    assert time.perf_counter() - began < 3
    rows = result["rows"]
    assert len(rows) == 1 and 0.9 < rows[0].elap_time < 1.5 and rows[0].trans > 0
    logged = read_siege_log(tmp_path / "load_output.csv")
    assert [(r.trans, r.okay, round(r.elap_time, 2)) for r in logged] == [
        (rows[0].trans, rows[0].okay, round(rows[0].elap_time, 2))
    ]
    assert len(read_request_log(tmp_path / "requests.csv")) == rows[0].trans


def test_cancelling_the_task_keeps_the_row(tmp_path, recording_server):
    async def cancel_after(seconds: float) -> None:
        task = asyncio.create_task(
            run_load(
                profile_of(LoadPhase(users=2, delay=0.1, duration_s=30)),
                recording_server.url,
                tmp_path,
                quiet(),
            )
        )
        await asyncio.sleep(seconds)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_after(0.7))
    rows = read_siege_log(tmp_path / "load_output.csv")
    assert len(rows) == 1 and rows[0].trans > 0


def test_open_loop_keeps_its_rate_whatever_the_server_does(tmp_path, recording_server):
    recording_server.delay_s = 0.2  # a closed loop of 2 users could send at most 10 requests/s
    rows = run_load_test(profile_of(LoadPhase(users=2, delay=0, rate=100, duration_s=2.0)), recording_server.url,
                         tmp_path, quiet(mode="open"))  # fmt: skip
    assert 160 <= rows[0].trans <= 240  # Poisson: 200 expected, sd 14
    records = read_request_log(tmp_path / "requests.csv")
    assert min(r.latency_s for r in records) >= 0.19  # the server answers after 0.2 s
    starts = sorted(r.start for r in records)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert 0.007 < sum(gaps) / len(gaps) < 0.013  # mean inter-arrival 1/rate


def test_post_predict_cycles_through_the_images(tmp_path, recording_server):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.jpg", "b.png", "c.jpeg"):
        (images / name).write_bytes(b"\xff\xd8fake " + name.encode())
    (images / "notes.txt").write_text("not an image")
    profile = profile_of(LoadPhase(users=1, delay=0, duration_s=0.5, target="POST /predict"))
    run_load_test(profile, recording_server.url, tmp_path / "out", quiet(images=images))
    posts = recording_server.arrivals
    assert len(posts) >= 6
    assert all(a.method == "POST" and a.path == "/predict" for a in posts)
    assert all(a.headers["content-type"].startswith("multipart/form-data; boundary=") for a in posts)
    names = [next(n for n in ("a.jpg", "b.png", "c.jpeg") if n.encode() in a.body) for a in posts[:6]]
    assert names == ["a.jpg", "b.png", "c.jpeg"] * 2
    assert all(b'name="file"' in a.body for a in posts)
