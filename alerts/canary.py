"""The pipeline heartbeat: a synthetic canary resident whose fall travels the whole chain every minute,
and a dead-man's switch that tells operators, by a path that does not use the pipeline, when it goes quiet.

* ``seed_canary``: the canary's organisations (no real carer belongs to them), home, resident, gateway
  ``gw-canary``, a fall sensor, a documented basis for monitoring and a care plan.
* ``CanaryPublisher``: every minute a ``fall`` reading from the canary's sensor over MQTT
  (``carechain/v1/gw/gw-canary/events``) -> bridge -> Kafka -> worker -> ``alerts`` -> alert service,
  which recognises resident ``canary-*``, records the round trip in ``canary_heartbeats``, closes the alert
  at once and never notifies anyone.
* ``Watchdog``: if no canary arrived for ``quiet_after`` (3 minutes), e-mail (SMTP, direct) and, when
  configured, a signed webhook to the operators, straight from this process: no Kafka, no outbox. It
  alerts too when it cannot even read the database. It repeats at most every ``repeat_every`` and says
  when the canary is back.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alerts import store
from alerts.mail import MailSender
from alerts.webhook import WebhookSender
from carechain.care_plan import CarePlan
from carechain.settings import Settings

log = logging.getLogger(__name__)

CANARY_HOME = "canary-home"
CANARY_KOMMUN = "kommun-canary"
CANARY_REGION = "region-canary"


def canary_device(gateway_id: str) -> str:
    return f"{gateway_id}-fall"


def seed_canary(conn: psycopg.Connection[Any], settings: Settings) -> None:
    """Rows for the canary (idempotent). Its organisations are its own, so no nurse ever sees it."""
    gw, rid = settings.canary_gateway_id, settings.canary_resident_id
    with conn.transaction():
        conn.execute(
            "INSERT INTO organisations (org_id, name, kind) VALUES (%s, 'Pipeline canary (kommun)', 'kommun'),"
            " (%s, 'Pipeline canary (region)', 'region') ON CONFLICT DO NOTHING",
            (CANARY_KOMMUN, CANARY_REGION),
        )
        conn.execute(
            "INSERT INTO homes (home_id, kommun_org_id, region_org_id, area) VALUES (%s, %s, %s, 'canary')"
            " ON CONFLICT DO NOTHING",
            (CANARY_HOME, CANARY_KOMMUN, CANARY_REGION),
        )
        conn.execute(
            "INSERT INTO residents (resident_id, home_id, kommun_org_id, region_org_id) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (rid, CANARY_HOME, CANARY_KOMMUN, CANARY_REGION),
        )
        conn.execute(
            "INSERT INTO gateways (gateway_id, home_id) VALUES (%s, %s) ON CONFLICT DO NOTHING", (gw, CANARY_HOME)
        )
        conn.execute(
            "INSERT INTO devices (device_id, gateway_id, home_id, device_kind, room, resident_id)"
            " VALUES (%s, %s, %s, 'fall', 'hall', %s) ON CONFLICT DO NOTHING",
            (canary_device(gw), gw, CANARY_HOME, rid),
        )
        conn.execute(
            "INSERT INTO care_plans (resident_id, plan) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (rid, Jsonb(CarePlan(rid).to_dict())),
        )
        conn.execute(
            "INSERT INTO monitoring_consents (home_id, subject, subject_ref, basis, basis_note, method, recorded_by)"
            " SELECT %s, 'resident', %s, 'documented_basis', 'synthetic pipeline canary, no person', 'system',"
            " 'alerts.canary' WHERE NOT EXISTS (SELECT 1 FROM monitoring_consents WHERE home_id = %s)",
            (CANARY_HOME, rid, CANARY_HOME),
        )


def canary_reading(gateway_id: str, at: datetime, seq: int) -> bytes:
    """One MQTT message (a batch of one reading) in the event contract's wire format."""
    reading = {
        "v": 1,
        "device_id": canary_device(gateway_id),
        "kind": "fall",
        "value": True,
        "ts": at.isoformat(timespec="milliseconds"),
        "seq": seq,
    }
    return json.dumps({"v": 1, "readings": [reading]}, separators=(",", ":")).encode()


class CanaryPublisher:
    """Publishes the canary's fall every ``every`` (reuses the simulator's MQTT gateway connection)."""

    def __init__(self, settings: Settings, every: timedelta = timedelta(minutes=1)) -> None:
        from carechain.simulation.gateway import events_topic
        from carechain.simulation.publisher import BrokerAddress, GatewayConnection

        self.settings = settings
        self.every = every
        self.topic = events_topic(settings.canary_gateway_id)
        self.conn = GatewayConnection(
            settings.canary_gateway_id,
            BrokerAddress(settings.mqtt_host, settings.mqtt_port, settings.mqtt_username, settings.mqtt_password),
        )

    def publish_once(self, now: datetime) -> None:
        from carechain.simulation.gateway import GatewayMessage

        payload = canary_reading(self.settings.canary_gateway_id, now, int(now.timestamp() * 1000))
        msg = GatewayMessage(now.timestamp(), self.settings.canary_gateway_id, self.topic, payload, readings=1)
        self.conn.publish(msg).wait_for_publish(5)

    def close(self) -> None:
        self.conn.close()


@dataclass(slots=True)
class WatchState:
    alarmed: bool = False
    last_alarm_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    quiet: bool
    last_arrival: datetime | None
    detail: str


def judge(last_arrival: datetime | None, started_at: datetime, now: datetime, quiet_after: timedelta) -> Verdict:
    """Pure: is the pipeline quiet? Before the first canary, the watchdog's own start is the reference."""
    ref = last_arrival or started_at
    if now - ref > quiet_after:
        since = f"since {last_arrival.isoformat()}" if last_arrival else f"since start at {started_at.isoformat()}"
        return Verdict(True, last_arrival, f"no canary has come through the pipeline {since}")
    return Verdict(False, last_arrival, "ok")


class Watchdog:
    """The dead-man's switch. Alerts operators directly (SMTP, optional webhook), never through Kafka."""

    def __init__(
        self,
        settings: Settings,
        quiet_after: timedelta = timedelta(minutes=3),
        repeat_every: timedelta = timedelta(minutes=15),
        mail: MailSender | None = None,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self.settings = settings
        self.quiet_after = quiet_after
        self.repeat_every = repeat_every
        self.mail = mail or MailSender(settings.smtp_host, settings.smtp_port, settings.smtp_from)
        self.webhooks = webhooks
        self.state = WatchState()
        self.started_at: datetime | None = None

    def _last_arrival(self) -> datetime | None:
        with psycopg.connect(self.settings.database_url, autocommit=True, connect_timeout=5) as conn:
            row = store.last_canary(conn)
        return row[0] if row else None

    def check(self, now: datetime) -> Verdict:
        """One check; sends an operator alarm (or an all-clear) when due. Returns the verdict."""
        if self.started_at is None:
            self.started_at = now
        try:
            verdict = judge(self._last_arrival(), self.started_at, now, self.quiet_after)
        except psycopg.Error as e:
            verdict = Verdict(True, None, f"the canary watchdog cannot read the database: {type(e).__name__}")
        st = self.state
        if verdict.quiet:
            if st.last_alarm_at is None or now - st.last_alarm_at >= self.repeat_every:
                self._tell(now, "pipeline_quiet", verdict.detail)
                st.alarmed, st.last_alarm_at = True, now
        elif st.alarmed:
            self._tell(now, "pipeline_ok", "the canary is coming through again")
            st.alarmed, st.last_alarm_at = False, None
        return verdict

    def _tell(self, now: datetime, kind: str, text: str) -> None:
        key = f"deadman:{kind}:{now.isoformat(timespec='seconds')}"
        payload = {"type": kind, "text": text, "at": now.isoformat()}
        log.error("dead-man's switch: %s", text) if kind == "pipeline_quiet" else log.info("canary: %s", text)
        r = self.mail.send(self.settings.operator_email, payload, key)
        if not r.ok:
            log.error("dead-man's switch could not e-mail operators: %s", r.detail)
        if self.webhooks is not None and self.settings.operator_webhook_url:
            w = self.webhooks.send(
                self.settings.operator_webhook_url, self.settings.webhook_secret, payload, key, int(now.timestamp())
            )
            if not w.ok:
                log.error("dead-man's switch could not call the operators' webhook: %s", w.detail)


def run_canary(
    settings: Settings,
    stop: threading.Event,
    clock: Callable[[], datetime],
    every: timedelta = timedelta(minutes=1),
    check_every: timedelta = timedelta(seconds=20),
    publish: bool = True,
    quiet_after: timedelta = timedelta(minutes=3),
) -> None:
    """Publisher and watchdog in one loop (``carechain alerts --canary``)."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        seed_canary(conn, settings)
    pub = CanaryPublisher(settings, every) if publish else None
    dog = Watchdog(
        settings, quiet_after=quiet_after, webhooks=WebhookSender() if settings.operator_webhook_url else None
    )
    next_pub = clock()
    try:
        while not stop.is_set():
            now = clock()
            if pub is not None and now >= next_pub:
                try:
                    pub.publish_once(now)
                except (OSError, RuntimeError, ValueError) as e:
                    log.warning("canary publish failed: %s", e)  # the watchdog will notice
                next_pub = now + every
            dog.check(now)
            stop.wait(min(check_every.total_seconds(), every.total_seconds()))
    finally:
        if pub is not None:
            pub.close()


def now_utc() -> datetime:
    return datetime.now(UTC)
