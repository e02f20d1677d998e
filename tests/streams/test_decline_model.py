"""The slow-decline model: a CUSUM of log activity in the resident's own SD (crafted sequences)."""

from __future__ import annotations

import random

from streams.models.decline import DEFAULT_H, DeclineSeries


def _steady(s: DeclineSeries, rng: random.Random, days: int, level: float = 400.0, sd: float = 0.08) -> list[bool]:
    return [s.step(level * rng.lognormvariate(0.0, sd))[1] for _ in range(days)]


def test_steady_resident_gives_no_alert_for_months() -> None:
    s = DeclineSeries()
    assert not any(_steady(s, random.Random(11), 150))


def test_a_four_week_slowing_is_found_within_two_weeks() -> None:
    rng = random.Random(12)
    s = DeclineSeries()
    assert not any(_steady(s, rng, 24))
    # as in the simulator: the motion interval grows by 1.2 x (days / 28)
    alerts = [s.step(400.0 / (1 + 1.2 * d / 28) * rng.lognormvariate(0.0, 0.08))[1] for d in range(1, 15)]
    assert any(alerts) and alerts.index(True) <= 11


def test_a_noisy_resident_needs_more_than_a_few_quiet_days() -> None:
    rng = random.Random(13)
    s = DeclineSeries()
    _steady(s, rng, 30, sd=0.3)
    assert not any(s.step(400.0 * 0.8)[1] for _ in range(2))  # two quieter days are within their usual spread


def test_false_alarm_feedback_restarts_and_raises_the_cusum() -> None:
    s = DeclineSeries()
    _steady(s, random.Random(14), 30)
    raw = s.dump()
    again = DeclineSeries()
    again.load(raw)
    assert again.dump() == raw and s.h == DEFAULT_H
