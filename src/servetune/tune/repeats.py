"""A statistic of a spec run N times for real (`--verify-repeats N`): its mean over the runs and their range.

Two real runs of one spec differ by a few percent (response time most: on 2 cores it is set by the bursts),
so a verdict of "no worse than baseline B" on one run each is a coin toss. With repeats, a candidate is no
worse than B on a statistic when its mean is at most B's mean plus half B's range (`Spread.bar`): within B's
own run-to-run variation. With one run the range is 0 and the rule is the strict comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    mean: float
    low: float
    high: float
    runs: int

    @property
    def half_range(self) -> float:
        return (self.high - self.low) / 2

    @property
    def bar(self) -> float:
        """The most another spec's mean may be to count as no worse than this one."""
        return self.mean + self.half_range

    def text(self, fmt: str) -> str:
        """The mean, and with several runs their min-max range: '40.4 (39.0-41.8)'."""
        mean = format(self.mean, fmt)
        return mean if self.runs == 1 else f"{mean} ({format(self.low, fmt)}-{format(self.high, fmt)})"


def spread(values: Sequence[float]) -> Spread:
    """The mean and range of one statistic over the runs (at least one)."""
    if not values:
        raise ValueError("a spread needs at least one run")
    return Spread(sum(values) / len(values), min(values), max(values), len(values))
