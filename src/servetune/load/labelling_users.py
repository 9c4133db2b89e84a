"""Labelling users: people who upload real photos through the held-out flow and answer with the true class.

Each user is a thread that, until stopped, uploads a photo drawn at random from the given (photo, class)
list to POST /predict, and when the server holds it out, thinks for a while (0..think_s, like siege's
delay) and sends the class to POST /labels; then thinks again before the next upload. The server's answer
to each label says whether its model agreed, so the tally is the live accuracy measured through the
deployed system, on any backend, without reading its store. They run beside the load profile and are not
part of its rows (load_output.csv); the run keeps their tally in `labelling.json`.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LabellingPlan:
    """Who labels: `users` threads, the photos they upload with their true classes, their think time."""

    users: int
    photos: tuple[tuple[Path, str], ...]
    think_s: float = 3.0
    source: str = ""  # the folder the photos came from, for the record
    seed: int | None = None


@dataclass
class LabellingTally:
    uploads: int = 0
    held_out: int = 0
    labels_sent: int = 0
    correct: int = 0
    accepted: int = 0
    refused: Counter = field(default_factory=Counter)  # HTTP status (or "no answer") of refused labels/uploads
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict:
        with self.lock:
            return {
                "uploads": self.uploads, "held_out": self.held_out, "labels_sent": self.labels_sent,
                "accepted": self.accepted, "correct": self.correct,
                "refused": {str(status): count for status, count in sorted(self.refused.items(), key=str)},
            }


class LabellingUsers:
    def __init__(self, plan: LabellingPlan, base_url: str) -> None:
        if not plan.photos:
            raise ValueError("labelling users need at least one photo")
        self.plan = plan
        self.base_url = base_url.rstrip("/")
        self.tally = LabellingTally()
        self.stop_event = threading.Event()
        self.threads = [
            threading.Thread(target=self.user, args=(number,), name=f"labelling-user-{number}", daemon=True)
            for number in range(plan.users)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> LabellingTally:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(TIMEOUT_S + 5)
        return self.tally

    def think(self, chooser: random.Random) -> bool:
        """Wait 0..think_s; False when stopped meanwhile."""
        return not self.stop_event.wait(chooser.uniform(0, self.plan.think_s))

    def user(self, number: int) -> None:
        chooser = random.Random(None if self.plan.seed is None else self.plan.seed + number)
        with httpx.Client(base_url=self.base_url, timeout=TIMEOUT_S) as client:
            while not self.stop_event.is_set():
                path, true_class = chooser.choice(self.plan.photos)
                self.one_photo(client, path, true_class, chooser)
                if not self.think(chooser):
                    return

    def one_photo(self, client: httpx.Client, path: Path, true_class: str, chooser: random.Random) -> None:
        tally = self.tally
        try:
            answer = client.post("/predict", files={"file": (path.name, path.read_bytes(), "image/jpeg")})
        except (httpx.HTTPError, OSError):
            with tally.lock:
                tally.refused["no answer"] += 1
            return
        with tally.lock:
            tally.uploads += 1
        body = answer.json() if answer.status_code == 200 else {}
        if not body.get("holdout"):
            return
        with tally.lock:
            tally.held_out += 1
        if not self.think(chooser):
            return
        try:
            labelled = client.post("/labels", json={"id": body["id"], "label": true_class})
        except httpx.HTTPError:
            with tally.lock:
                tally.refused["no answer"] += 1
            return
        with tally.lock:
            tally.labels_sent += 1
            if labelled.status_code == 200:
                tally.accepted += 1
                tally.correct += int(bool(labelled.json().get("correct")))
            else:
                tally.refused[labelled.status_code] += 1


def write_tally(path: Path, plan: LabellingPlan, tally: LabellingTally) -> dict:
    """labelling.json: the plan and what came of it; returns what it wrote."""
    data = {"users": plan.users, "think_s": plan.think_s, "photos": len(plan.photos), "source": plan.source,
            **tally.as_dict()}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return data
