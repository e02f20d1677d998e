"""Webhook signature (HMAC-SHA256 over timestamp.body) and the canary watchdog's verdict, pure."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from alerts.canary import canary_reading, judge
from alerts.dispatch import Backoff
from alerts.webhook import sign, verify
from carechain.events import parse_events_payload
from tests.alerts.conftest import T0, later


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"a":1}'
    expected = "sha256=" + hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("s3cret", 1700000000, body) == expected
    assert verify("s3cret", 1700000000, body, expected)
    assert not verify("s3cret", 1700000001, body, expected)


def test_backoff_is_exponential_and_capped() -> None:
    b = Backoff(base=timedelta(seconds=2), cap=timedelta(minutes=1))
    assert [b.delay(i).total_seconds() for i in (1, 2, 3, 4, 10)] == [2, 4, 8, 16, 60]


def test_canary_reading_follows_the_event_contract() -> None:
    out = parse_events_payload("gw-canary", canary_reading("gw-canary", T0, 1), T0)
    assert len(out) == 1 and getattr(out[0], "kind", None) == "fall"


def test_dead_mans_switch_verdict() -> None:
    q = timedelta(minutes=3)
    assert not judge(later(1), T0, later(3), q).quiet
    assert judge(later(1), T0, later(4.5), q).quiet
    assert not judge(None, T0, later(2), q).quiet  # just started
    assert judge(None, T0, later(4), q).quiet
