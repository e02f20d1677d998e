"""Pure silences: a reason and an expiry are required; scopes resident, home, gateway, detector."""

from __future__ import annotations

import pytest

from alerts.silences import Scope, Silence, SilenceError, matching_silence
from carechain.candidates import Family
from tests.alerts.conftest import T0, candidate, later


def silence(scope: Scope, target: str, hours: float = 24) -> Silence:
    return Silence(1, scope, target, "På sjukhus", T0, later(hours * 60), "coordinator-maria")


def test_reason_and_expiry_required() -> None:
    with pytest.raises(SilenceError):
        Silence(1, Scope.RESIDENT, "res-0001", "  ", T0, later(60), "x")
    with pytest.raises(SilenceError):
        Silence(1, Scope.RESIDENT, "res-0001", "why", T0, T0, "x")


def test_scopes_and_expiry() -> None:
    c = candidate()
    assert matching_silence(c, [silence(Scope.RESIDENT, "res-0001")], [], later(1)) is not None
    assert matching_silence(c, [silence(Scope.RESIDENT, "res-0001", hours=1)], [], later(61)) is None  # expired
    assert matching_silence(c, [silence(Scope.HOME, "home-0001")], [], later(1)) is not None
    assert matching_silence(c, [silence(Scope.DETECTOR, "fall_rule")], [], later(1)) is not None
    # A gateway under maintenance mutes its home's technical and absence alerts, not a fall.
    gw = [silence(Scope.GATEWAY, "gw-0001")]
    assert matching_silence(c, gw, ["gw-0001"], later(1)) is None
    assert matching_silence(candidate(kind="inactivity"), gw, ["gw-0001"], later(1)) is not None
    tech = candidate(kind="gateway_silent", family=Family.TECHNICAL)
    assert matching_silence(tech, gw, ["gw-0001"], later(1)) is not None
    assert matching_silence(tech, gw, ["gw-0002"], later(1)) is None
