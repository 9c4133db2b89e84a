"""siege 4.0.7's accounting of one run, so our load_output.csv means what the reference's means.

From siege's browser.c, main.c and log.c:
- a response with status < 400 (or 401/407) is OKAY; every other answered status is a transaction too,
  neither OKAY nor Failed (e.g. 404)...
- ...except 408 and 500..509: siege treats them as a failed request: Failed += 1, not a transaction, yet
  their response time still adds to the total time (so Resp Time and Concurrent include them);
- no HTTP answer (refused, reset, timeout, malformed): Failed += 1 and nothing else;
- Resp Time = total time / Trans, Trans Rate = Trans / elapsed, Concurrent = total time / elapsed,
  Data Trans = whole MiB (truncated), Throughput = whole MiB / elapsed;
- a request still in flight when the run ends is dropped, as siege cancels its threads.
Response time runs from before the connect to the end of the body; think time is not part of it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from servetune.config import LoadRunRow

SIEGE_FAILED_STATUSES = frozenset([408, *range(500, 510)])


def is_okay(status: int) -> bool:
    return 0 < status < 400 or status in (401, 407)


def c_divide(numerator: float, denominator: float) -> float:
    """C float division: x/0 is inf, 0/0 is nan (siege prints them as `inf` and `-nan`)."""
    if denominator == 0:
        return math.nan if numerator == 0 else math.inf
    return numerator / denominator


@dataclass
class RunTally:
    """Counters of one run (one log row)."""

    started: float = field(default_factory=time.perf_counter)
    trans: int = 0
    okay: int = 0
    failed: int = 0
    total_time: float = 0.0
    bytes: int = 0
    latencies: list[float] = field(default_factory=list)  # answered requests, for live percentiles

    def add(self, status: int, latency_s: float, body_bytes: int) -> None:
        if status == 0:
            self.failed += 1
            return
        self.total_time += latency_s
        self.bytes += body_bytes
        self.latencies.append(latency_s)
        if status in SIEGE_FAILED_STATUSES:
            self.failed += 1
            return
        self.trans += 1
        self.okay += is_okay(status)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def to_row(self, elapsed_s: float, date_time: str | None = None) -> LoadRunRow:
        megabytes = self.bytes / (1024 * 1024)
        whole_megabytes = int(megabytes)
        return LoadRunRow(
            date_time=date_time or time.strftime("%Y-%m-%d %H:%M:%S"),
            trans=self.trans,
            elap_time=elapsed_s,
            data_trans=whole_megabytes,
            resp_time=c_divide(self.total_time, self.trans),
            trans_rate=c_divide(self.trans, elapsed_s),
            throughput=c_divide(whole_megabytes, elapsed_s),
            concurrent=c_divide(self.total_time, elapsed_s),
            okay=self.okay,
            failed=self.failed,
        )
