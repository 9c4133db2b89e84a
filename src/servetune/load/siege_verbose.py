"""siege's verbose output, read back into the row of a run whose siege never wrote it.

siege 4.0.x now and then hangs at the end of a timed run: its signal thread cancels the user threads and
the main thread waits forever to join one of them. Its row is written only after that join, and the hung
process ignores SIGINT (the one thread that waits for signals has already returned), so it has to be
killed. With `verbose = true` (siege's own default) every answered request has printed a line first
(browser.c):

    HTTP/1.1 200     0.01 secs:    7163 bytes ==> GET  /test

and every socket failure an `[error] socket: …` or `[alert] socket: …` notice. Adding those up with
siege's accounting (tally.py) gives the row siege would have written, with two differences: the response
times are those printed, to 10 ms, and a failure siege reports in two notices counts twice.
"""

from __future__ import annotations

import re

from servetune.config import LoadRunRow
from servetune.load.tally import RunTally

VERBOSE_LINE = re.compile(r"^HTTP/\d(?:\.\d)? (\d{3})(?:\(C\)| {3})? *(\d+\.\d+) secs: +(\d+) bytes ==> ")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # siege colours its notices whatever `color` says
SOCKET_FAILURE = re.compile(r"^\[(error|alert)\] socket: ")


def tally_verbose_output(text: str) -> RunTally:
    """Every transaction and socket failure siege printed for one run."""
    tally = RunTally()
    for raw in text.splitlines():
        line = ANSI_ESCAPE.sub("", raw).strip()
        if match := VERBOSE_LINE.match(line):
            tally.add(int(match[1]), float(match[2]), int(match[3]))
        elif SOCKET_FAILURE.match(line):
            tally.add(0, 0.0, 0)
    return tally


def row_from_verbose_output(text: str, elapsed_s: float) -> LoadRunRow:
    """The row of a run that lasted `elapsed_s` (its -t), from what its siege printed."""
    return tally_verbose_output(text).to_row(elapsed_s)  # dated now, as siege dates a row when it ends
