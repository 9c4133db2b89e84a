"""Load profiles: YAML files of phases (users, think time, run length, repeats, target).

Time compression (`time_scale`, in config.TIME_SCALE_MIN..TIME_SCALE_MAX) multiplies every run's duration and nothing else: users, think time, target
and open-loop rate stay, so each phase offers the same load per second, only for a shorter time. One caveat
follows from siege's semantics, which the driver keeps: every run starts all its users at once, so in a
much-shortened run with a long think time that first burst weighs more than in the full-length run.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from servetune.config import TIME_SCALE_MAX, TIME_SCALE_MIN, LoadProfile
from servetune.errors import ServetuneError
from servetune.yaml_unique import safe_load_unique_keys

PACKAGED_PROFILES = ("reference", "quick")


class LoadProfileError(ServetuneError, ValueError):
    """A profile that cannot be read; the message names the file and the problem."""


def packaged_profile_path(name: str) -> Path:
    return Path(str(resources.files("servetune.load") / "profiles" / f"{name}.yaml"))


def load_profile(name_or_path: str | Path, time_scale: float = 1.0) -> LoadProfile:
    """The packaged profile of that name (reference, quick) or a YAML file, durations times `time_scale`."""
    if not TIME_SCALE_MIN <= time_scale <= TIME_SCALE_MAX:
        raise LoadProfileError(
            f"time scale must be a number > 0, from {TIME_SCALE_MIN:g} to {TIME_SCALE_MAX:g}, got {time_scale:g}"
        )
    text = str(name_or_path)
    path = packaged_profile_path(text) if text in PACKAGED_PROFILES else Path(text)
    if not path.is_file():
        known = ", ".join(PACKAGED_PROFILES)
        raise LoadProfileError(f"{path}: no such profile file (packaged profiles: {known})")
    profile = parse_profile(path)
    return compress(profile, time_scale)


def parse_profile(path: Path) -> LoadProfile:
    try:
        data = safe_load_unique_keys(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else "?"
        raise LoadProfileError(f"{path}: line {line}: not valid YAML: {error.problem}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise LoadProfileError(f"{path}: cannot read: {error}") from None
    if not isinstance(data, dict):
        raise LoadProfileError(f"{path}: a profile is a YAML mapping with `name` and `phases`")
    try:
        profile = LoadProfile.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{field_path(e['loc'])}: {e['msg']}" for e in error.errors())
        raise LoadProfileError(f"{path}: {problems}") from None
    if profile.images is not None and not Path(profile.images).is_absolute():
        profile = profile.model_copy(update={"images": str((path.parent / profile.images).resolve())})
    return profile


def field_path(location: tuple) -> str:
    """('phases', 2, 'users') -> 'phases[2].users'."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "profile"


def compress(profile: LoadProfile, time_scale: float) -> LoadProfile:
    if time_scale == 1.0:
        return profile
    phases = [
        phase.model_copy(update={"duration_s": phase.duration_s * time_scale}) for phase in profile.phases
    ]
    return profile.model_copy(update={"phases": phases, "time_scale": profile.time_scale * time_scale})
