"""A personal baseline: river's Welford mean/variance with a bounded memory.

``river.stats.Var`` remembers everything it has seen; a resident changes over
months, so after ``memory`` observations the count is held there (the sum of
squares scaled with it), which turns it into an approximately exponentially
weighted estimate. Three numbers of state, dumped explicitly.
"""

from __future__ import annotations

import math
from typing import Any

from river import stats


class Baseline:
    """Mean and standard deviation of a resident's own history."""

    __slots__ = ("memory", "var")

    def __init__(self, memory: int) -> None:
        self.memory = memory
        self.var = stats.Var()

    @property
    def n(self) -> float:
        return float(self.var.mean.n)

    @property
    def mean(self) -> float:
        return float(self.var.mean.get())

    @property
    def std(self) -> float:
        return math.sqrt(max(0.0, float(self.var.get()))) if self.n > 1 else 0.0

    def learn(self, x: float) -> None:
        self.var.update(x)
        n = self.var.mean.n
        if n > self.memory:
            self.var._S *= self.memory / n
            self.var.mean.n = float(self.memory)

    def z(self, x: float, floor: float) -> float:
        """How unusual ``x`` is, in standard deviations (with a floor on the deviation)."""
        return (x - self.mean) / max(self.std, floor)

    def dump(self) -> list[Any]:
        return [float(self.var.mean.n), float(self.var.mean._mean), float(self.var._S)]

    def load(self, raw: list[Any]) -> None:
        self.var.mean.n = float(raw[0])
        self.var.mean._mean = float(raw[1])
        self.var._S = float(raw[2])
