"""Gateway accounts on the real Mosquitto, created and revoked at run time.

Uses the dynamic-security plugin (Mosquitto 2) on its listener
(``PROVISIONED_PORT`` locally): each gateway gets a client (username = gateway
id, password) and a role of its own that may publish only under
``carechain/v1/gw/<gateway id>/#`` — the same rule as the static ACL
``pattern write carechain/v1/gw/%u/#``. Revoking deletes the client, which
also disconnects any session it has open, so a revoked gateway is locked out
at once. Commands go over MQTT to ``$CONTROL/dynamic-security/v1`` as the
admin the harness created (credentials in the state directory).

    from carechain.services.broker_accounts import BrokerAccounts
    accounts = BrokerAccounts.from_settings(settings)
    accounts.create_gateway("gw-0042", "s3cret")
    accounts.revoke_gateway("gw-0042")
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from carechain.settings import Settings

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
GATEWAY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class BrokerAccountError(RuntimeError):
    """The broker refused or did not answer an account command."""


def gateway_topic_prefix(gateway_id: str) -> str:
    """The topic tree a gateway may publish under."""
    return f"carechain/v1/gw/{gateway_id}/#"


def _role_name(gateway_id: str) -> str:
    return f"gateway-{gateway_id}"


@dataclass(frozen=True)
class BrokerAccounts:
    """Admin connection details for the dynamic-security listener."""

    host: str
    port: int
    admin_username: str
    admin_password: str
    ca_cert: Path | None = None
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerAccounts:
        """The local harness's broker (admin credentials written by `carechain services up`)."""
        from carechain.services.mosquitto import dynsec_admin_path

        path = dynsec_admin_path(settings)
        try:
            admin = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BrokerAccountError(f"no dynamic-security admin credentials at {path} (run services up)") from exc
        return cls(settings.mqtt_host, int(admin["port"]), admin["username"], admin["password"])

    def create_gateway(self, gateway_id: str, password: str) -> None:
        """Create (or reset the password of) a gateway's account, allowed to publish only under its own id."""
        _check_id(gateway_id)
        role = _role_name(gateway_id)
        create_client = {"command": "createClient", "username": gateway_id, "password": password,
                         "roles": [{"rolename": role, "priority": 0}]}
        replies = self.execute([
            {"command": "createRole", "rolename": role, "acls": [
                {"acltype": "publishClientSend", "topic": gateway_topic_prefix(gateway_id), "priority": 0,
                 "allow": True},
            ]},
            create_client,
        ], tolerate=("already exists",))
        if "already exists" in (replies[1].get("error") or ""):
            # Provisioned again (e.g. a replaced gateway): the old credentials and sessions go, new ones apply.
            self.execute([{"command": "deleteClient", "username": gateway_id}, create_client])

    def revoke_gateway(self, gateway_id: str) -> None:
        """Delete a gateway's account: open sessions are disconnected and it can no longer connect."""
        _check_id(gateway_id)
        self.execute([
            {"command": "deleteClient", "username": gateway_id},
            {"command": "deleteRole", "rolename": _role_name(gateway_id)},
        ], tolerate=("not found",))

    def gateway_exists(self, gateway_id: str) -> bool:
        """True if the broker has an account for this gateway."""
        _check_id(gateway_id)
        reply = self.execute([{"command": "getClient", "username": gateway_id}], tolerate=("not found",))[0]
        return not reply.get("error")

    def execute(self, commands: list[dict[str, Any]], tolerate: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Send dynamic-security commands; raise on an error unless its text contains a tolerated phrase."""
        done = threading.Event()
        correlation = uuid.uuid4().hex
        result: dict[str, Any] = {}
        payload = {"commands": [{**c, "correlationData": f"{correlation}-{i}"} for i, c in enumerate(commands)]}

        def on_connect(client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                result["error"] = f"admin connect refused: {reason}"
                done.set()
                return
            client.subscribe(RESPONSE_TOPIC, qos=1)

        def on_subscribe(client: mqtt.Client, _u: Any, _mid: int, _codes: Any, _p: Any) -> None:
            client.publish(CONTROL_TOPIC, json.dumps(payload), qos=1)

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            try:
                responses = json.loads(msg.payload)["responses"]
            except (ValueError, KeyError):
                return
            mine = [r for r in responses if str(r.get("correlationData", "")).startswith(correlation)]
            if mine:
                result["responses"] = mine
                done.set()

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"carechain-accounts-{correlation[:12]}",
                             protocol=mqtt.MQTTv5)
        client.username_pw_set(self.admin_username, self.admin_password)
        if self.ca_cert is not None:
            client.tls_set(ca_certs=str(self.ca_cert))
        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise BrokerAccountError(f"cannot reach the broker at {self.host}:{self.port}: {exc}") from exc
        client.loop_start()
        try:
            if not done.wait(self.timeout):
                raise BrokerAccountError(f"no answer from dynamic security within {self.timeout:.0f} s")
        finally:
            client.disconnect()
            client.loop_stop()
        if "error" in result:
            raise BrokerAccountError(result["error"])
        responses: list[dict[str, Any]] = result["responses"]
        for r in responses:
            error = r.get("error")
            if error and not any(t in error for t in tolerate):
                raise BrokerAccountError(f"{r.get('command')}: {error}")
        return responses


def _check_id(gateway_id: str) -> None:
    # MQTT wildcards or separators in a username would widen the gateway's topic tree.
    if not GATEWAY_ID.match(gateway_id):
        raise ValueError(f"invalid gateway id {gateway_id!r}")
