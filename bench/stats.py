"""What the benches share: the interval of a median."""

from __future__ import annotations

import random
import statistics


def median_interval(values: list[float], draws: int = 2000) -> tuple[float, float]:
    """The 95% interval of the median of ``values`` (a bootstrap, seeded: the same
    values give the same interval)."""
    if len(values) < 2:
        return values[0], values[0]
    pick = random.Random(0)
    medians = sorted(statistics.median(pick.choices(values, k=len(values))) for _ in range(draws))
    return medians[int(draws * 0.025)], medians[int(draws * 0.975) - 1]
