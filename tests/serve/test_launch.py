import pytest

from servetune.host import cpu_quota
from servetune.serve.launch import threads_per_worker


@pytest.mark.parametrize(("granted", "workers", "expected"), [(4, 2, 2), (4, 3, 1), (2, 4, 1), (8, 4, 2)])
def test_workers_share_the_granted_cpus(monkeypatch, granted, workers, expected):
    monkeypatch.setattr(cpu_quota, "inference_threads", lambda: granted)
    assert threads_per_worker(None, workers) == expected


def test_threads_given_or_one_process_are_left_as_they_are(monkeypatch):
    monkeypatch.setattr(cpu_quota, "inference_threads", lambda: 8)
    assert threads_per_worker(3, 4) == 3
    assert threads_per_worker(None, 1) is None
