"""Settings, built once at start-up (CLI or app factory) and passed down.

Every setting can be given as an environment variable with the prefix
``CARECHAIN_`` (e.g. ``CARECHAIN_KAFKA_BOOTSTRAP``). Defaults point at the
services that ``carechain services up`` starts on loopback.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


def _home() -> Path:
    return Path.home()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARECHAIN_", extra="ignore")

    # Where downloads are cached (Kafka jars) and where local services keep data.
    cache_dir: Path = _home() / ".cache" / "carechain"
    state_dir: Path = _home() / ".local" / "state" / "carechain"

    # MQTT (Mosquitto started by the harness listens here).
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 18830
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_tls_ca: Path | None = None
    mqtt_client_id: str = "carechain-bridge"

    # Kafka (KRaft single node started by the harness).
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_partitions: int = 8
    kafka_version: str | None = None  # None: carechain.services.kafka.KAFKA_VERSION (the tested release)
    topic_events: str = "events"
    topic_urgent: str = "events.urgent"
    topic_deadletter: str = "deadletter"
    topic_alerts: str = "alerts"
    topic_feedback: str = "feedback"
    # Stream worker: the Faust app id (consumer group, changelog topic prefix) and globally paused detectors.
    worker_app_id: str = "carechain-worker"
    worker_paused_detectors: str = ""  # comma-separated detector names

    # PostgreSQL / TimescaleDB.
    database_url: str = "postgresql://carechain:carechain@127.0.0.1:55432/carechain"

    # API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    jwt_issuer: str = "https://carechain.local/issuer"
    jwt_audience: str = "carechain-api"
    jwks_url: str | None = None  # None: the local issuer's keys (demo, tests)
    api_max_body_bytes: int = 1024 * 1024  # larger request bodies: 413
    api_db_pool_max: int = 32
    api_restricted_marker: bool = True  # blocked data: show "restricted data exist" (False: nothing)
    api_emergency_hours: float = 4.0  # emergency access time box

    # Alerts / notifications.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    webhook_secret: str = "change-me"
    smtp_from: str = "carechain@localhost"
    alerts_group_id: str = "carechain-alerts"  # Kafka consumer group of the alert service
    operator_email: str = "operators@localhost"  # dead-man's switch and flapping notices
    operator_webhook_url: str | None = None  # optional second direct path for the dead-man's switch
    canary_gateway_id: str = "gw-canary"
    canary_resident_id: str = "canary-1"

    timezone: str = "Europe/Stockholm"
    log_level: str = "INFO"
