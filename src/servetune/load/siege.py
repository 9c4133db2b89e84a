"""siege's --log file format (read and write, byte for byte), and running the real siege binary.

siege 4.x writes one line per run (log.c):
    "%s,%7d,%11.2f,%12u,%11.2f,%12.2f,%12.2f,%12.2f,%8d,%8d\n"
    date, Trans, Elap Time, Data Trans (whole MB, truncated), Resp Time = total time / Trans,
    Trans Rate = Trans / elapsed, Throughput = whole MB / elapsed, Concurrent = total time / elapsed,
    OKAY, Failed
under a padded header, and `**** message ****` lines for `siege -m`. A run with no transaction divides by
zero: glibc prints `inf` or `-nan`, and so do we.

`run_siege` runs the real binary phase by phase like the reference script
(`siege -c U -d D -t 60S --log=FILE URL`), with a siegerc of our own so ~/.siegerc cannot change the test.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from servetune.config import LoadProfile, LoadRunRow
from servetune.errors import ServetuneError
from servetune.load.siege_verbose import row_from_verbose_output
from servetune.runfolder import RunFolder

logger = logging.getLogger("servetune.load")

SIEGE_LOG_HEADER = (
    "      Date & Time,  Trans,  Elap Time,  Data Trans,  Resp Time,  Trans Rate,  Throughput,"
    "  Concurrent,    OKAY,   Failed\n"
)
SIEGE_LOG_COLUMNS = [name.strip() for name in SIEGE_LOG_HEADER.split(",")]


class SiegeLogError(ServetuneError, ValueError):
    """A malformed siege log; the message names the file and the line."""


def c_float(value: float, width: int) -> str:
    """printf("%{width}.2f") as glibc prints it, including inf and the -nan of 0.0/0."""
    if math.isnan(value):
        return "-nan".rjust(width)
    return f"{value:{width}.2f}"


def format_siege_row(row: LoadRunRow) -> str:
    return (
        f"{row.date_time},{row.trans:7d},{c_float(row.elap_time, 11)},{int(row.data_trans):12d},"
        f"{c_float(row.resp_time, 11)},{c_float(row.trans_rate, 12)},{c_float(row.throughput, 12)},"
        f"{c_float(row.concurrent, 12)},{row.okay:8d},{row.failed:8d}\n"
    )


def append_siege_row(path: Path, row: LoadRunRow, mark: str | None = None) -> None:
    """Append one run like siege does: the header first when the file does not exist yet, and a
    `**** mark ****` line before the row when given, as `siege -m` writes one."""
    path = Path(path)
    with open(path, "a", encoding="ascii", errors="replace") as log:
        if log.tell() == 0:
            log.write(SIEGE_LOG_HEADER)
        if mark is not None:
            log.write(f"**** {mark} ****\n")
        log.write(format_siege_row(row))
        log.flush()
        os.fsync(log.fileno())


def write_siege_log(path: Path, rows: list[LoadRunRow]) -> None:
    """A complete siege log: header and one line per run (replaces the file)."""
    Path(path).write_text(SIEGE_LOG_HEADER + "".join(format_siege_row(row) for row in rows), encoding="ascii")


def read_siege_log(path: Path) -> list[LoadRunRow]:
    """Every run line of a siege --log file; header lines (even repeated), marks and blank lines are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SiegeLogError(f"{path}: cannot read siege log: {error}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("Date & Time", "****")):
            continue
        rows.append(parse_siege_line(stripped, path, number))
    return rows


def parse_siege_line(line: str, path: Path, number: int) -> LoadRunRow:
    fields = [field.strip() for field in line.split(",")]
    if len(fields) != len(SIEGE_LOG_COLUMNS):
        raise SiegeLogError(
            f"{path}: line {number}: expected {len(SIEGE_LOG_COLUMNS)} comma-separated fields "
            f"({', '.join(SIEGE_LOG_COLUMNS)}), found {len(fields)}"
        )
    date_time = fields[0]
    if len(date_time) != 19 or date_time[4] != "-" or date_time[13] != ":":
        raise SiegeLogError(f"{path}: line {number}: date {date_time!r} is not YYYY-MM-DD HH:MM:SS")
    values: list[float] = []
    for column, field in zip(SIEGE_LOG_COLUMNS[1:], fields[1:]):
        try:
            values.append(float(field))
        except ValueError:
            raise SiegeLogError(f"{path}: line {number}: {column} {field!r} is not a number") from None
    counts = {"Trans": values[0], "OKAY": values[7], "Failed": values[8]}
    for column, value in counts.items():
        if not (math.isfinite(value) and value.is_integer() and value >= 0):
            raise SiegeLogError(f"{path}: line {number}: {column} {value!r} is not a whole number >= 0")
    check_finite(values, path, number)
    return LoadRunRow(
        date_time=date_time,
        trans=int(values[0]),
        elap_time=values[1],
        data_trans=values[2],
        resp_time=values[3],
        trans_rate=values[4],
        throughput=values[5],
        concurrent=values[6],
        okay=int(values[7]),
        failed=int(values[8]),
    )


# siege divides by zero where a run had no transaction (Resp Time) or took less than its clock's resolution
# (Trans Rate, Throughput, Concurrent) and writes -nan or inf. Such a value means "none" (a run that served
# nothing has no response time); it is kept as written (the log round-trips) and the statistics never read
# it (they weigh Resp Time by OKAY and use Elap Time and the counts). Any other non-finite value is an error.
PER_TRANSACTION_COLUMNS = ("Resp Time",)
PER_SECOND_COLUMNS = ("Trans Rate", "Throughput", "Concurrent")


def check_finite(values: list[float], path: Path, number: int) -> None:
    no_transaction = values[0] == 0 and values[7] == 0
    no_time = values[1] == 0
    for column, value in zip(SIEGE_LOG_COLUMNS[1:], values):
        if math.isfinite(value):
            continue
        if column in PER_TRANSACTION_COLUMNS and no_transaction:
            continue
        if column in PER_SECOND_COLUMNS and (no_transaction or no_time):
            continue
        raise SiegeLogError(f"{path}: line {number}: {column} {value} is not a finite number")


SIEGE_OUTPUT = "siege_output.txt"
SIEGERC = "siegerc"
SOCKET_TIMEOUT_S = 30  # siege's own limit on one connect or read
OVERRUN_GRACE_S = 15  # beyond -t and one socket timeout, a run is hanging
SIGINT_GRACE_S = 10


class SiegeRunError(ServetuneError, RuntimeError):
    """siege is missing, cannot do what was asked, or failed."""


def write_siegerc(path: Path, keep_alive: bool, users: int) -> None:
    """siege's defaults, written out so that a user's ~/.siegerc cannot change the test."""
    path.write_text(
        "# written by servetune for one load test\n"
        "verbose = true\n"  # siege's default; a run siege never ends is rebuilt from these lines
        "quiet = false\n"
        "color = off\n"
        "show-logfile = false\n"
        "logging = false\n"
        "protocol = HTTP/1.1\n"
        "chunked = true\n"
        "cache = false\n"
        f"connection = {'keep-alive' if keep_alive else 'close'}\n"
        f"timeout = {SOCKET_TIMEOUT_S}\n"
        "failures = 1024\n"
        "internet = false\n"
        "benchmark = false\n"
        f"limit = {max(255, users)}\n"
        "parser = false\n"
        "accept-encoding = gzip, deflate\n",
        encoding="ascii",
    )


def siege_command(
    siege: str, siegerc: Path, users: int, delay: float, seconds: int, log: Path, url: str
) -> list[str]:
    return [
        siege,
        f"--rc={siegerc}",
        "-c",
        str(users),
        "-d",
        f"{delay:g}",
        "-t",
        f"{seconds}S",
        f"--log={log}",
        url,
    ]


def run_siege(
    profile: LoadProfile,
    base_url: str,
    out_dir: Path,
    keep_alive: bool = False,
    stop: threading.Event | None = None,
    siege: str | None = None,
) -> list[LoadRunRow]:
    """Every run of the profile with the real siege binary; returns the rows of out_dir/load_output.csv and
    keeps the profile in out_dir/load_profile.yaml.

    siege's -t counts whole seconds, so a compressed run lasts round(duration) seconds, at least 1. A stop
    sends SIGINT to the running siege, which then writes its row like at the end of a run. A siege that
    hangs past its time and ignores SIGINT is killed and its row rebuilt from its verbose output, after a
    `****` mark that says so.
    """
    siege = siege or shutil.which("siege")
    if siege is None:
        raise SiegeRunError("the `siege` command is not installed (Debian/Ubuntu: apt-get install siege)")
    if any(phase.target != "GET /test" for phase in profile.phases):
        raise SiegeRunError("--driver siege sends GET /test only (siege cannot upload multipart images)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(out_dir)
    log = folder.load_log
    log.unlink(missing_ok=True)
    folder.keep_profile(profile)  # as the built-in driver does: analyze names each run's phase from it
    siegerc = out_dir / SIEGERC
    write_siegerc(siegerc, keep_alive, max(phase.users for phase in profile.phases))
    url = base_url.rstrip("/") + "/test"
    line_buffering = line_buffering_prefix()
    with (
        open(out_dir / SIEGE_OUTPUT, "w", encoding="utf-8") as output,
        tempfile.TemporaryDirectory(prefix="siege-home-") as home,
    ):
        env = siege_env(Path(home), siegerc)
        for _, phase in profile.runs():
            if stop is not None and stop.is_set():
                break
            seconds = max(1, round(phase.duration_s))
            command = siege_command(siege, siegerc, phase.users, phase.delay, seconds, log, url)
            output.write("$ " + " ".join(command) + "\n")
            output.flush()
            began_at = output.tell()
            process = subprocess.Popen(
                [*line_buffering, *command], stdout=output, stderr=subprocess.STDOUT, env=env
            )
            if not wait_for_siege(process, stop, deadline_s=seconds + SOCKET_TIMEOUT_S + OVERRUN_GRACE_S):
                message = rebuild_row(log, out_dir / SIEGE_OUTPUT, began_at, seconds, bool(line_buffering))
                # written through `output`: siege wrote through the same open file, so it is at the end
                output.write(f"servetune: {message}\n")
                output.flush()
                continue
            if process.returncode not in (0, -signal.SIGINT):
                raise SiegeRunError(
                    f"siege exited with status {process.returncode}; see {out_dir / SIEGE_OUTPUT}"
                )
    return read_siege_log(log) if log.exists() else []


def line_buffering_prefix() -> list[str]:
    """siege's verbose lines go through stdio, which buffers 4 KiB when writing to a file; stdbuf (coreutils)
    makes it write each line, so a run that has to be killed has printed all it did. Empty without stdbuf."""
    stdbuf = shutil.which("stdbuf")
    return [stdbuf, "-oL"] if stdbuf else []


def rebuild_row(log_path: Path, output_path: Path, began_at: int, seconds: int, line_buffered: bool) -> str:
    """The row of a run whose siege hung and was killed, from what it printed from `began_at` of its output
    (siege_verbose.py), marked as rebuilt in the log so that nobody takes it for siege's own; returns what
    was done, in words."""
    with open(output_path, encoding="utf-8", errors="replace") as output:
        output.seek(began_at)
        row = row_from_verbose_output(output.read(), elapsed_s=seconds)
    message = (
        f"siege hung at the end of this {seconds} s run and was killed; "
        "servetune rebuilt the next row from its verbose output"
    )
    if not line_buffered:
        message += " (stdbuf is not installed, so up to 4 KiB of its last lines may be missing)"
    append_siege_row(log_path, row, mark=message)
    logger.warning("%s: %s (%d transactions, %d failed)", log_path, message, row.trans, row.failed)
    return message


def siege_env(home: Path, siegerc: Path) -> dict[str, str]:
    # siege writes ~/.siege/siege.conf on first use; a private HOME keeps the user's untouched.
    return {**os.environ, "HOME": str(home), "SIEGERC": str(siegerc.resolve())}


def wait_for_siege(process: subprocess.Popen, stop: threading.Event | None, deadline_s: float) -> bool:
    """Wait until siege exits; a stop, or a run that outlasts `deadline_s` (siege 4.0 now and then hangs at
    the end of a timed run), gets SIGINT, on which siege writes its row and exits. Returns False when siege
    ignored that too (a hung siege does) and had to be killed."""
    deadline = time.monotonic() + deadline_s
    while process.poll() is None:
        if (stop is not None and stop.is_set()) or time.monotonic() > deadline:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=SIGINT_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                return False
        time.sleep(0.1)
    return True
