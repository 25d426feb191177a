"""Medians, spreads and percentiles of measured samples."""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0-100) by linear interpolation between ranks.

    This is the default method of NumPy's ``percentile``. Raises ValueError for an
    empty sequence.
    """
    if not values:
        raise ValueError("percentile of an empty sequence")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    fraction = rank - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


@dataclass(frozen=True)
class Summary:
    """The median of repeated measurements of one figure, with their range."""

    median: float
    low: float
    high: float
    samples: tuple[float, ...]

    @property
    def spread_percent(self) -> float:
        """Return the range (high - low) as a percentage of the median."""
        if self.median == 0:
            return 0.0
        return 100 * (self.high - self.low) / abs(self.median)


def summarize(samples: Sequence[float]) -> Summary:
    """Return the median and range of ``samples``; raises ValueError when empty."""
    if not samples:
        raise ValueError("no samples to summarize")
    return Summary(
        median=statistics.median(samples),
        low=min(samples),
        high=max(samples),
        samples=tuple(samples),
    )
