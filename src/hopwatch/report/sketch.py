"""A mergeable quantile sketch with a relative-error guarantee (DDSketch-style).

Values are counted in logarithmic buckets ``[gamma**k, gamma**(k+1))`` with
``gamma = (1 + alpha) / (1 - alpha)``; a quantile is answered with the bucket's
representative ``2 * gamma**(k+1) / (gamma + 1)``, which is within a relative
error ``alpha`` of every value in the bucket. So for any quantile ``q`` the
estimate ``v`` satisfies ``|v - x| <= alpha * x`` where ``x`` is the exact value
of rank ``floor(q * (n - 1))`` (0-based) among the ``n`` values added.

The bucket range is fixed: values in ``[MIN_VALUE, MAX_VALUE)`` (1 microsecond to
1e9 ms, which is what the log can hold: milliseconds with 3 decimals, below
the parser's 1e9 limit) map to :data:`BUCKETS` buckets, so the sketch is one
flat array of 8-byte counters (about 11 KB) whatever it is fed; values below
``MIN_VALUE`` (including 0) are counted as zero. Merging adds the arrays.
"""

from __future__ import annotations

import math
import operator
from array import array
from typing import Final

#: The relative accuracy of every quantile (1%).
ALPHA: Final = 0.01
GAMMA: Final = (1 + ALPHA) / (1 - ALPHA)
#: Multiply ln(value) by this to get the bucket index before the shift.
INV_LN_GAMMA: Final = 1.0 / math.log(GAMMA)
MIN_VALUE: Final = 0.001
MAX_VALUE: Final = 1e9
#: Added to floor(ln(v) / ln(gamma)) so that MIN_VALUE lands in bucket 0 and
#: int() (which truncates) acts as floor() on a non-negative argument.
SHIFT: Final = -math.floor(math.log(MIN_VALUE) * INV_LN_GAMMA)
#: One spare bucket on each side absorbs log() rounding at the range ends.
BUCKETS: Final = math.floor(math.log(MAX_VALUE) * INV_LN_GAMMA) + SHIFT + 2


def representative(index: int) -> float:
    """The value reported for every member of bucket ``index``."""
    return 2.0 * GAMMA ** (index - SHIFT + 1) / (GAMMA + 1.0)


class Sketch:
    """Counts of values per logarithmic bucket, plus the exact maximum."""

    __slots__ = ("bins", "max", "zeros")

    def __init__(self) -> None:
        self.bins = array("Q", bytes(8 * BUCKETS))
        self.zeros = 0
        self.max = 0.0

    def add(self, value: float) -> None:
        if value >= MIN_VALUE:
            self.bins[int(math.log(value) * INV_LN_GAMMA + SHIFT)] += 1
            if value > self.max:
                self.max = value
        else:
            self.zeros += 1

    @property
    def count(self) -> int:
        return self.zeros + sum(self.bins)

    def merge(self, other: Sketch) -> None:
        self.bins = array("Q", map(operator.add, self.bins, other.bins))
        self.zeros += other.zeros
        if other.max > self.max:
            self.max = other.max

    def copy(self) -> Sketch:
        twin = Sketch()
        twin.bins = array("Q", self.bins)
        twin.zeros = self.zeros
        twin.max = self.max
        return twin

    def quantiles(self, qs: tuple[float, ...]) -> list[float | None]:
        """Estimates for each q in ``qs`` (ascending), None when the sketch is empty."""
        total = self.count
        if total == 0:
            return [None for _ in qs]
        ranks = [math.floor(q * (total - 1)) for q in qs]
        results: list[float | None] = []
        seen = self.zeros
        index = 0
        bins = self.bins
        for rank in ranks:
            if rank < self.zeros:
                results.append(0.0)
                continue
            if rank == total - 1:  # the largest value is known exactly
                results.append(self.max)
                continue
            while seen <= rank:
                seen += bins[index]
                index += 1
            # the value of this rank lies in bucket index - 1; never report above the max
            results.append(min(representative(index - 1), self.max))
        return results

    def quantile(self, q: float) -> float | None:
        return self.quantiles((q,))[0]

    def __getstate__(self) -> tuple[bytes, int, float]:
        return self.bins.tobytes(), self.zeros, self.max

    def __setstate__(self, state: tuple[bytes, int, float]) -> None:
        raw, self.zeros, self.max = state
        self.bins = array("Q")
        self.bins.frombytes(raw)
