"""The bridge as a real subprocess between the real Mosquitto, Kafka and PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict

import httpx
import psycopg
import pytest

from carechain.events import Event
from carechain.settings import Settings
from ingest.mqtt import forget_session
from tests.ingest.live import (
    Consumed,
    Publisher,
    batch,
    consumer,
    drain,
    end_offsets_total,
    events_topic,
    homes,
    private_database,
    private_topics,
    produce_backlog,
    reading,
    running_bridge,
    tag,
)

pytestmark = pytest.mark.integration


def test_10000_readings_arrive_exactly_once_in_order_per_resident(live: Settings) -> None:
    prefix = f"t{tag()}"
    devices = homes(prefix, 20)
    sensors = [d for d in devices if d.device_kind != "gateway"]
    per_device = 10_000 // len(sensors)
    with private_database(live, devices) as dsn, private_topics(live) as topics, \
            running_bridge(live, dsn, topics) as bridge:
        pub = Publisher(live)
        published = 0
        by_gateway: dict[str, list[str]] = defaultdict(list)
        for d in sensors:
            by_gateway[d.gateway_id].append(d.device_id)
        # Each gateway sends batches of 10 readings, alternating its devices, seq rising per device.
        for seq_block in range(0, per_device, 5):
            for gw, devs in by_gateway.items():
                items = [reading(dev, seq) for seq in range(seq_block, seq_block + 5) for dev in devs]
                pub.publish(events_topic(gw), batch(items))
                published += len(items)
        pub.close()
        assert published == 10_000
        c = consumer(live, topics.events)
        got = drain(c, lambda recs: len(recs) >= published, timeout=90)
        time.sleep(1.0)  # anything extra (a duplicate) would show up now
        got += drain(c, lambda recs: False, timeout=0.5)
        c.close()
        assert bridge.alive()
    assert bridge.proc is not None and bridge.proc.returncode == 0, "SIGTERM did not stop the bridge cleanly"
    events = [(r.partition, Event.from_json(r.value)) for r in got]
    ids = Counter((e.device_id, e.seq) for _, e in events)
    assert len(ids) == 10_000, f"lost {10_000 - len(ids)}"
    assert max(ids.values()) == 1, "duplicates"
    # In order per resident: the resident's key pins one partition, read in offset order.
    last: dict[str, int] = {}
    partition_of: dict[str, int] = {}
    for part, e in events:
        assert e.resident_id.startswith(prefix)
        assert partition_of.setdefault(e.resident_id, part) == part
        assert e.seq > last.get(e.device_id, -1), f"out of order for {e.device_id}"
        last[e.device_id] = e.seq


def test_kill_9_loses_nothing(live: Settings) -> None:
    prefix = f"k{tag()}"
    devices = homes(prefix, 10, sensors=("motion",))
    sensors = [d for d in devices if d.device_kind != "gateway"]
    total_msgs = 1500  # 10 readings each -> 15,000 readings, about 6 s of publishing
    with private_database(live, devices) as dsn, private_topics(live) as topics, \
            running_bridge(live, dsn, topics) as bridge:
        published: list[tuple[str, int]] = []
        done = threading.Event()

        def publish() -> None:
            pub = Publisher(live)
            for i in range(total_msgs):
                d = sensors[i % len(sensors)]
                base = (i // len(sensors)) * 10
                items = [reading(d.device_id, base + k) for k in range(10)]
                pub.publish(events_topic(d.gateway_id), batch(items))
                published.extend((d.device_id, base + k) for k in range(10))
                if i % 50 == 49:
                    pub.wait()
                time.sleep(0.004)
            pub.close()
            done.set()

        c = consumer(live, topics.events)
        publisher = threading.Thread(target=publish)
        publisher.start()
        got = drain(c, lambda recs: len(recs) >= total_msgs * 10 // 2, timeout=60)
        bridge.kill9()
        killed_at = len(got)
        time.sleep(1.0)  # the publisher keeps going while the bridge is dead
        bridge.start()
        publisher.join(120)
        assert done.is_set()
        want = set(published)
        seen: Counter[tuple[str, int]] = Counter()

        def count(recs: list[Consumed]) -> None:
            for r in recs:
                e = json.loads(r.value)
                seen[(e["device_id"], e["seq"])] += 1

        count(got)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not want <= seen.keys():
            count(drain(c, lambda recs: bool(recs), timeout=1.0))
        time.sleep(1.0)  # late duplicates, if any, are counted too
        count(drain(c, lambda recs: False, timeout=0.5))
        c.close()
        stats = bridge.wait_stats(lambda s: True, 5)
    lost = len(want - set(seen))
    duplicated = sum(n - 1 for n in seen.values() if n > 1)
    print(f"\nkill -9 after {killed_at} readings in Kafka: published={len(want)} lost={lost} "
          f"duplicated={duplicated} (restarted bridge: redelivered={stats.get('redelivered')}, "
          f"seq_replays={stats.get('seq_replays')})")
    assert lost == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hostile_payloads(gw: str, dev: str, n: int) -> list[tuple[str, bytes]]:
    """``n`` malformed or hostile (topic, payload) pairs; each must become exactly one dead letter."""
    ok = reading(dev, 1)
    kinds = [
        lambda i: (events_topic(gw), b"{not json " + str(i).encode()),
        lambda i: (events_topic(gw), json.dumps({**ok, "seq": f"{i}"}).encode()),  # wrong type
        lambda i: (events_topic(gw), json.dumps({**ok, "kind": "heart_rate", "value": [i]}).encode()),
        lambda i: (events_topic(gw), b'{"v":1,"readings":"' + b"A" * (260 * 1024) + b'"}'),  # huge
        lambda i: (events_topic(gw), json.dumps({**ok, "device_id": f"ghost-{i}"}).encode()),  # unknown
        lambda i: (events_topic(gw), b'{"v":1,"device_id":"' + dev.encode()
                   + b'","kind":"spo2","value":NaN,"ts":"2026-01-01T00:00:00Z","seq":1}'),
        lambda i: (events_topic(gw), json.dumps({**ok, "ts": "2999-01-01T00:00:00+00:00"}).encode()),
        lambda i: (events_topic(gw), bytes((i * 7 + k) % 256 for k in range(64)) + b"\xff\xfe"),  # binary
        lambda i: (f"carechain/v1/gw/{gw}/other", json.dumps(ok).encode()),  # wrong topic
        lambda i: (events_topic(gw), b"[" * 50_000 + b"]" * 50_000),  # deep nesting
    ]
    return [kinds[i % len(kinds)](i) for i in range(n)]


def test_1000_hostile_payloads_are_dead_lettered_and_good_readings_still_flow(live: Settings) -> None:
    prefix = f"m{tag()}"
    devices = homes(prefix, 2, sensors=("motion",))
    gw, dev = devices[0].gateway_id, devices[1].device_id
    good_gw, good_dev = devices[2].gateway_id, devices[3].device_id
    hostile = hostile_payloads(gw, dev, 1000)
    metrics_port = free_port()
    with private_database(live, devices) as dsn, private_topics(live) as topics, \
            running_bridge(live, dsn, topics, ["--metrics-port", str(metrics_port)]) as bridge:
        pub = Publisher(live)
        for i, (topic, payload) in enumerate(hostile):
            pub.publish(topic, payload)
            pub.publish(events_topic(good_gw), json.dumps(reading(good_dev, i)).encode())
            if i % 100 == 99:
                pub.wait()
        pub.close()
        dl = consumer(live, topics.deadletter)
        ev = consumer(live, topics.events)
        letters = drain(dl, lambda recs: len([r for r in recs if prefix in json.loads(r.value)["mqtt_topic"]]) >= 1000,
                        timeout=90)
        good = drain(ev, lambda recs: len(recs) >= 1000, timeout=60)
        dl.close()
        ev.close()
        assert bridge.alive(), "the bridge died on hostile input"
        stats = bridge.wait_stats(lambda s: s.get("messages", 0) >= 2000, 10)
        log = "\n".join(bridge.lines)
        exposition = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    samples = dict(line.rsplit(" ", 1) for line in exposition.splitlines() if line and not line.startswith("#"))
    # >=: other engineers' gateways publishing on the shared broker reach this bridge too.
    assert float(samples['carechain_bridge_deadlettered_total{reason="unknown_device"}']) >= 100
    assert float(samples["carechain_bridge_registry_devices"]) == 4
    # Payloads go to the dead-letter topic, never to the log.
    assert "ghost-" not in log and "not json" not in log and "AAAA" not in log
    ours = [json.loads(r.value) for r in letters if prefix in json.loads(r.value)["mqtt_topic"]]
    assert len(ours) == 1000
    reasons = Counter(d["reason"] for d in ours)
    assert all(d["reason"] and d["received_at"] and "payload_b64" in d for d in ours)
    assert set(reasons) >= {"bad_json", "bad_seq", "bad_value", "too_large", "unknown_device", "future_time",
                            "not_utf8", "bad_topic"}
    assert reasons["bad_topic"] == 100 and reasons["unknown_device"] == 100
    assert "internal_error" not in reasons
    assert sorted(Event.from_json(r.value).seq for r in good) == list(range(1000))
    print(f"\ndead-letter reasons: {dict(reasons)}; bridge counters: {stats.get('deadlettered')}")


def test_home_without_consent_is_discarded_and_withdrawal_takes_effect_within_seconds(live: Settings) -> None:
    prefix = f"c{tag()}"
    devices = homes(prefix, 3, sensors=("motion",))
    # Home 0: never consented. Home 1: consents, then withdraws. Home 2: control.
    devices = [d if d.home_id != f"{prefix}-h0000" else type(d)(**{**d.__dict__, "monitoring_active": False})
               for d in devices]
    dev = {d.home_id[-1]: d for d in devices if d.device_kind == "motion"}
    with private_database(live, devices) as dsn, private_topics(live) as topics, \
            running_bridge(live, dsn, topics, ["--registry-refresh-s", "600"]) as bridge:
        ev = consumer(live, topics.events)
        dl = consumer(live, topics.deadletter)
        pub = Publisher(live)
        for seq in range(50):
            for h in "012":
                pub.publish(events_topic(dev[h].gateway_id), json.dumps(reading(dev[h].device_id, seq)).encode())
        pub.wait()
        first = drain(ev, lambda recs: len(recs) >= 100, timeout=30)
        homes_seen = Counter(Event.from_json(r.value).home_id[-1] for r in first)
        assert homes_seen == {"1": 50, "2": 50}
        # Withdraw home 1's consent. The registry only reloads every 600 s, so NOTIFY must do it.
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE ingest_test_devices SET monitoring_active = false WHERE home_id = %s",
                         (dev["1"].home_id,))
        t0 = time.monotonic()
        effective_after: float | None = None
        seq = 1000
        while time.monotonic() - t0 < 10 and effective_after is None:
            seq += 1
            sent = time.monotonic()
            pub.publish(events_topic(dev["1"].gateway_id), json.dumps(reading(dev["1"].device_id, seq)).encode())
            pub.publish(events_topic(dev["2"].gateway_id), json.dumps(reading(dev["2"].device_id, seq)).encode())
            pub.wait()
            recs = drain(ev, lambda rs, s=seq: any(Event.from_json(r.value).seq == s
                                                    and Event.from_json(r.value).home_id.endswith("2") for r in rs),
                         timeout=5)
            if not any(Event.from_json(r.value).home_id.endswith("1") for r in recs):
                effective_after = sent - t0
        pub.close()
        stats = bridge.wait_stats(lambda s: s["discarded_no_consent"] >= 51, 10)
        late = drain(ev, lambda recs: False, timeout=1.0)
        letters = drain(dl, lambda recs: False, timeout=1.0)
        ev.close()
        dl.close()
        log = "\n".join(bridge.lines)
    assert effective_after is not None and effective_after < 5.0, f"withdrawal not effective: {effective_after}"
    assert not any(Event.from_json(r.value).home_id[-1] in "01" for r in late)
    assert not [r for r in letters if prefix in json.loads(r.value)["mqtt_topic"]], "discarded readings in deadletter"
    assert stats["discarded_no_consent"] >= 51
    # Logged once per home, with the (pseudonymous) home id only.
    assert log.count(f"home {dev['0'].home_id} has no active monitoring consent") == 1
    assert log.count(f"home {dev['1'].home_id} has no active monitoring consent") == 1
    print(f"\nconsent withdrawal effective {effective_after:.2f} s after the UPDATE; "
          f"discarded={stats['discarded_no_consent']}")


def test_fall_reaches_urgent_consumer_within_a_second_despite_a_million_event_backlog(live: Settings) -> None:
    prefix = f"u{tag()}"
    devices = homes(prefix, 4, sensors=("pendant",))
    pendants = [d for d in devices if d.device_kind == "pendant"]
    with private_database(live, devices) as dsn, private_topics(live) as topics, \
            running_bridge(live, dsn, topics) as bridge:
        t0 = time.monotonic()
        produced = produce_backlog(live, topics.events, 1_000_000, [d.resident_id for d in pendants])
        backlog_s = time.monotonic() - t0
        assert produced == 1_000_000
        assert end_offsets_total(live, topics.events) >= 1_000_000  # nobody has read it: a real backlog
        urgent = consumer(live, topics.urgent)
        drain(urgent, lambda recs: False, timeout=0.5)  # connected and fetching before the fall
        pub = Publisher(live)
        latencies = []
        for i, d in enumerate(pendants):
            sent = time.monotonic()
            pub.publish(events_topic(d.gateway_id), json.dumps(reading(d.device_id, i, kind="fall")).encode())
            got = drain(urgent, lambda recs, r=d.resident_id: any(x.key == r.encode() for x in recs), timeout=5)
            latencies.append(time.monotonic() - sent)
            ev = Event.from_json(got[-1].value)
            assert ev.kind == "fall" and ev.resident_id == d.resident_id
        pub.close()
        urgent.close()
        assert bridge.alive()
    print(f"\nbacklog of 1,000,000 produced in {backlog_s:.1f} s; fall -> events.urgent consumer: "
          f"{', '.join(f'{x * 1000:.0f} ms' for x in latencies)}")
    assert max(latencies) < 1.0


def run_bridge_once(live: Settings, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    client_id = f"ingest-test-bridge-{tag()}"
    try:
        return subprocess.run(
            [sys.executable, "-m", "carechain.cli", "bridge", "--startup-wait-s", "1", "--session-expiry-s", "60"],
            env={**os.environ, "CARECHAIN_MQTT_CLIENT_ID": client_id, **env}, capture_output=True, text=True,
            timeout=timeout,
        )
    finally:
        forget_session(live.mqtt_host, live.mqtt_port, client_id)


def test_bridge_refuses_to_start_without_registry_view_or_topics(live: Settings) -> None:
    with private_database(live) as dsn, private_topics(live) as topics:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP VIEW device_registry")
        no_view = run_bridge_once(live, {**topics.env(), "CARECHAIN_DATABASE_URL": dsn})
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE VIEW device_registry AS SELECT * FROM ingest_test_devices")
        no_topic = run_bridge_once(live, {**topics.env(), "CARECHAIN_DATABASE_URL": dsn,
                                          "CARECHAIN_TOPIC_EVENTS": f"missing_{tag()}"})
    assert no_view.returncode == 2 and "device registry not readable" in no_view.stderr
    assert "Traceback" not in no_view.stderr
    assert no_topic.returncode == 2 and "Kafka topics missing: missing_" in no_topic.stderr


def test_bridge_reconnects_and_resumes_its_session_after_being_kicked(live: Settings) -> None:
    """Another connection with the bridge's client id takes the session over (the broker drops
    the bridge); the bridge reconnects with backoff, resumes the session and loses nothing."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    prefix = f"r{tag()}"
    devices = homes(prefix, 2, sensors=("motion",))
    sensors = [d for d in devices if d.device_kind == "motion"]
    with private_database(live, devices) as dsn, private_topics(live) as topics, \
            running_bridge(live, dsn, topics) as bridge:
        client_id = bridge.env["CARECHAIN_MQTT_CLIENT_ID"]
        pub = Publisher(live)
        sent = 0

        def publish(n: int) -> None:
            nonlocal sent
            for _ in range(n):
                d = sensors[sent % 2]
                pub.publish(events_topic(d.gateway_id), json.dumps(reading(d.device_id, sent)).encode())
                sent += 1
            pub.wait()

        publish(200)
        # Take the session over without acknowledging anything, then leave.
        thief = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                            protocol=mqtt.MQTTv5, manual_ack=True)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        connected = threading.Event()
        thief.on_connect = lambda *a: connected.set()
        thief.connect(live.mqtt_host, live.mqtt_port, clean_start=False, properties=props)
        thief.loop_start()
        assert connected.wait(10)
        publish(200)  # queued in the session while nobody consumes it
        thief.disconnect()
        thief.loop_stop()
        publish(200)
        pub.close()
        c = consumer(live, topics.events)
        got = drain(c, lambda recs: len({Event.from_json(r.value).seq for r in recs}) >= sent, timeout=60)
        c.close()
        assert bridge.alive()
        log = "\n".join(bridge.lines)
    seqs = {Event.from_json(r.value).seq for r in got}
    assert seqs == set(range(sent)), f"lost {sent - len(seqs)}"
    assert log.count("MQTT connected") >= 2, "the bridge did not reconnect"


@pytest.mark.parametrize("victim", ["producer process", "in-process producer"])
def test_kill_9_of_the_producer_process_loses_nothing(live: Settings, victim: str) -> None:
    """``--producer-process``: kill -9 the child that owns the Kafka producer while readings flow;
    the bridge starts a new one and re-sends. Without it (the default) the same flow runs through
    the in-process producer (no kill): both paths stay tested."""
    import psutil

    prefix = f"p{tag()}"
    devices = homes(prefix, 4, sensors=("motion",))
    sensors = [d for d in devices if d.device_kind == "motion"]
    args = ["--producer-process"] if victim == "producer process" else []
    with private_database(live, devices) as dsn, private_topics(live) as topics, \
            running_bridge(live, dsn, topics, args) as bridge:
        assert bridge.proc is not None
        # The producer child (multiprocessing's resource tracker is a child too).
        children = [p for p in psutil.Process(bridge.proc.pid).children()
                    if any("spawn_main" in part for part in p.cmdline())]
        assert len(children) == (1 if victim == "producer process" else 0)
        pub = Publisher(live)
        want: set[tuple[str, int]] = set()
        c = consumer(live, topics.events)
        seen: set[tuple[str, int]] = set()
        for round_ in range(6):
            for i in range(100):
                d = sensors[i % len(sensors)]
                seq = round_ * 1000 + i
                items = [reading(d.device_id, seq * 10 + k) for k in range(10)]
                pub.publish(events_topic(d.gateway_id), batch(items))
                want.update((d.device_id, seq * 10 + k) for k in range(10))
            pub.wait()
            if round_ == 2 and children:
                children[0].kill()
        pub.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not want <= seen:
            for r in drain(c, lambda recs: bool(recs), timeout=1.0):
                e = json.loads(r.value)
                seen.add((e["device_id"], e["seq"]))
        c.close()
        assert bridge.alive()
        log = "\n".join(bridge.lines)
    assert want <= seen, f"lost {len(want - seen)}"
    if victim == "producer process":
        assert "producer process is gone; starting a new one" in log or "producer process died" in log
