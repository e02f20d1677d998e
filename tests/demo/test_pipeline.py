"""The demo's in-process pipeline: routing -> two-lane queue -> monitors -> the alert sink."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from carechain.candidates import AlertCandidate
from carechain.embedded.pipeline import Pipeline, registry_for
from carechain.simulation.homes import home_config


def _reading(device: str, kind: str, value: object, t: float, seq: int) -> dict[str, object]:
    ts = datetime.fromtimestamp(t, UTC).isoformat()
    return {"v": 1, "device_id": device, "kind": kind, "value": value, "ts": ts, "seq": seq}


def test_a_fall_published_by_a_gateway_becomes_a_candidate_and_bad_input_a_dead_letter() -> None:
    homes = [home_config(1, i) for i in (1, 2)]
    now = 1_790_000_000.0
    got: list[AlertCandidate] = []

    async def sink(c: AlertCandidate, at: datetime) -> None:
        got.append(c)

    async def main() -> Pipeline:
        p = Pipeline(registry_for([h.layout for h in homes]), {}, sink, now=lambda: now)
        consumer = asyncio.create_task(p.consume())
        lay = homes[0].layout
        batch = {"v": 1, "readings": [_reading(lay.motion("kitchen"), "motion", True, now - 60, 1)]}
        await p.on_message(f"carechain/v1/gw/{lay.gateway_id}/events", json.dumps(batch).encode())
        fall = _reading(lay.device("pendant"), "fall", True, now - 1, 2)
        await p.on_message(f"carechain/v1/gw/{lay.gateway_id}/events", json.dumps(fall).encode())
        await p.on_message("carechain/v1/gw/gw-0002/events", b"{not json")
        stranger = _reading("nope", "motion", True, now, 1)
        await p.on_message("carechain/v1/gw/gw-0002/events", json.dumps(stranger).encode())
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
        consumer.cancel()
        return p

    p = asyncio.run(main())
    assert [c.kind for c in got] == ["fall"]
    assert got[0].resident_id == homes[0].resident_id
    assert p.stats.urgent == 1 and p.stats.events == 2
    assert p.stats.dead_letters == {"bad_json": 1, "unknown_device": 1}
