"""A Kubernetes object's fields as `deploy import` reads them: each read by its path (`spec.ports[0].port`),
so that what was never read is known and can be named as not carried over; and the memory quantities
they hold."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MEMORY_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


class ManifestError(ValueError):
    """A manifest that cannot be translated; the message says which object and field."""


@dataclass
class Translation:
    fields: dict  # DeploymentSpec fields
    notes: list[str] = field(default_factory=list)  # what was not carried over as it is, and why


def name_of(obj: dict) -> str:
    """An object's metadata.name, or "?" when it has none."""
    return str((obj.get("metadata") or {}).get("name", "?"))


class ObjectFields:
    """One object's fields, read by path (`spec.ports[0].port`); what was never read was not carried over."""

    def __init__(self, obj: dict) -> None:
        self.obj = obj
        self.unread = set(leaf_paths(obj))
        self.kind = str(obj.get("kind"))
        self.name = name_of(obj)

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"

    def get(self, path: str, default: Any = None) -> Any:
        """The value at `path` (default when absent); it and every field under it count as read."""
        self.unread = {p for p in self.unread if not (p == path or p.startswith((f"{path}.", f"{path}[")))}
        return self.peek(path, default)

    def peek(self, path: str, default: Any = None) -> Any:
        """The value at `path`, without counting it as read."""
        value: Any = self.obj
        for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
            if part.startswith("["):
                index = int(part[1:-1])
                value = value[index] if isinstance(value, list) and index < len(value) else None
            else:
                value = value.get(part) if isinstance(value, dict) else None
            if value is None:
                return default
        return value

    def differences(self, rendered: dict, leave_out: set[str] = frozenset()) -> list[str]:
        """What `rendered` (the object servetune writes in its place) changes of this one, field by field
        (`path theirs becomes ours`, `path theirs: dropped`, `path ours: added`), but the paths in
        `leave_out`; every field counts as read."""
        theirs, ours = leaf_values(self.obj), leaf_values(rendered)
        self.unread -= set(theirs)
        changes = []
        for path, value in theirs.items():
            if path in leave_out:
                continue
            if path not in ours:
                changes.append(f"{path} {value}: dropped")
            elif ours[path] != value:
                changes.append(f"{path} {value} becomes {ours[path]}")
        return changes + [f"{path} {value}: added" for path, value in ours.items()
                          if path not in theirs and path not in leave_out]

    def left_over_note(self) -> str | None:
        if not self.unread:
            return None
        return f"{self}: {', '.join(sorted(self.unread))}: not carried over (no place in a servetune spec)"


def leaf_paths(obj: Any) -> list[str]:
    """`a.b[0].c` for every value that is not a non-empty mapping or list."""
    return list(leaf_values(obj))


def leaf_values(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{`a.b[0].c`: value} for every value that is not a non-empty mapping or list (a key may hold dots:
    the paths are for naming fields and comparing objects, not for `peek`)."""
    if isinstance(obj, dict) and obj:
        return {p: v for key, value in obj.items() for p, v in leaf_values(value, f"{prefix}.{key}" if prefix else key).items()}
    if isinstance(obj, list) and obj:
        return {p: v for index, value in enumerate(obj) for p, v in leaf_values(value, f"{prefix}[{index}]").items()}
    return {prefix: obj}


def cpu_cores(value, where: str = "cpu") -> float:
    """A Kubernetes CPU quantity ('1', '0.5', '500m') in cores."""
    text = str(value).strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", text)
    if not match:
        raise ManifestError(f"{where}.cpu: {text!r} is not a CPU quantity (e.g. 1, 0.5, 500m)")
    number = float(match.group(1))
    return number / 1000 if match.group(2) else number


def memory_bytes(value, where: str = "memory") -> float:
    text = str(value).strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", text)
    if not match:
        raise ManifestError(f"{where}.memory: {text!r} is not a memory quantity (e.g. 2Gi, 512Mi, 1G)")
    return float(match.group(1)) * MEMORY_UNITS[match.group(2) or ""]
