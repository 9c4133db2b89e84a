"""One call for a load test with either driver: the built-in one (load/driver.py) or siege (load/siege.py).

Both write the same files into the output folder: load_output.csv (siege --log rows), load_profile.yaml (the
profile as it ran) and, the built-in driver only, requests.csv.
"""

from __future__ import annotations

import threading
from enum import StrEnum
from pathlib import Path

from servetune.config import LoadProfile, LoadRunRow
from servetune.load.driver import LoadOptions, run_load_test
from servetune.load.siege import run_siege
from servetune.load.target import TargetError


class LoadDriver(StrEnum):
    BUILTIN = "builtin"  # asyncio, siege's semantics, per-request log, open or closed loop
    SIEGE = "siege"  # the siege binary itself, closed loop, GET /test only


TARGETS = {"test": "GET /test", "predict": "POST /predict"}  # --target's short names


def aim_at(profile: LoadProfile, target: str) -> LoadProfile:
    """Every phase sends to `target` (a key of TARGETS) instead of what the profile says."""
    endpoint = TARGETS[target]
    return profile.model_copy(update={"phases": [p.model_copy(update={"target": endpoint}) for p in profile.phases]})


def check_driver(driver: LoadDriver, options: LoadOptions) -> None:
    """TargetError when the driver cannot do what the options ask; nothing has started yet."""
    if driver == LoadDriver.SIEGE and options.mode == "open":
        raise TargetError("--mode open needs --driver builtin (siege has closed-loop users only)")
    if options.images is not None and not options.images.is_dir():
        raise TargetError(f"{options.images}: no such image folder")


def run_with_driver(
    driver: LoadDriver,
    profile: LoadProfile,
    base_url: str,
    out_dir: Path,
    options: LoadOptions | None = None,
    stop: threading.Event | None = None,
) -> list[LoadRunRow]:
    """Every run of the profile against base_url with the chosen driver; returns the rows of load_output.csv."""
    options = options or LoadOptions()
    check_driver(driver, options)
    if driver == LoadDriver.SIEGE:
        return run_siege(profile, base_url, out_dir, keep_alive=options.keep_alive, stop=stop)
    return run_load_test(profile, base_url, out_dir, options, stop)
