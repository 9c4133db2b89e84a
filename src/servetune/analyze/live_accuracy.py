"""Live accuracy of runs (run.json's `live_accuracy`: held-out labels that labelling users gave during the
run): pooled over repeated runs of one deployment, and whether two of them can be told apart.

Two measurements are told apart when their 95 % Wilson intervals do not overlap; that is stricter than a
test of the difference, so intervals that overlap say "not shown different by these labels", never "equal".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from servetune.config import RunSummary
from servetune.labels.stats import wilson_interval


@dataclass(frozen=True)
class LiveAccuracy:
    value: float
    n: int
    interval: tuple[float, float]  # 95 % Wilson

    def text(self) -> str:
        """`70.40% (95 % Wilson 65.7%..74.7%, n=250)`."""
        low, high = self.interval
        return f"{self.value:.2%} (95 % Wilson {low:.1%}..{high:.1%}, n={self.n})"

    def as_dict(self) -> dict:
        return {"accuracy": self.value, "n": self.n, "wilson_95": list(self.interval)}

    def overlaps(self, other: LiveAccuracy) -> bool:
        (low, high), (other_low, other_high) = self.interval, other.interval
        return low <= other_high and other_low <= high


def live_accuracy(runs: Sequence[RunSummary]) -> LiveAccuracy | None:
    """One run's live accuracy as it recorded it; several runs of one deployment: their held-out labels
    pooled, with the interval of the pool; None when no run measured live accuracy."""
    measured = [s for s in runs if s.live_accuracy is not None and s.live_accuracy_n]
    if len(measured) == 1 and measured[0].live_accuracy_interval is not None:
        s = measured[0]
        return LiveAccuracy(s.live_accuracy, s.live_accuracy_n, s.live_accuracy_interval)
    if not measured:
        return None
    correct = sum(round(s.live_accuracy * s.live_accuracy_n) for s in measured)
    n = sum(s.live_accuracy_n for s in measured)
    return LiveAccuracy(correct / n, n, wilson_interval(correct, n))


def overlap_notes(named: Sequence[tuple[str, LiveAccuracy | None]]) -> list[str]:
    """For each pair that both measured live accuracy: whether their 95 % intervals overlap, in words."""
    notes = []
    measured = [(name, live) for name, live in named if live is not None]
    for (a, live_a), (b, live_b) in combinations(measured, 2):
        if live_a.overlaps(live_b):
            notes.append(f"live accuracy of {a} and {b}: the 95 % intervals overlap ({live_a.text()}; "
                         f"{live_b.text()}): these labels do not tell them apart")
        else:
            (high, live_high), (low, live_low) = sorted([(a, live_a), (b, live_b)], key=lambda x: -x[1].value)
            notes.append(f"live accuracy of {a} and {b}: the 95 % intervals do not overlap: {high} "
                         f"({live_high.text()}) is more accurate than {low} ({live_low.text()}) on these labels")
    return notes
