"""The values that cross the bridge's seams, free of any I/O library.

The MQTT adapter turns paho messages into :class:`InboundMessage`; the bridge
hands :class:`Record` batches to a sink (the Kafka adapter, or the embedded
demo's in-process queue), which raises :class:`DeliveryError` when it cannot
make all of them durable. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One MQTT message as the bridge sees it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    dup: bool
    connection: int  # which connection delivered it; an ack is only valid on the same one


@dataclass(slots=True)
class Record:
    """One record to produce; key and value already serialised.

    Not frozen: one is made per reading, and a frozen dataclass costs four times as much
    to construct (``object.__setattr__`` per field).
    """

    topic: str
    key: bytes | None
    value: bytes


class DeliveryError(RuntimeError):
    """The sink did not make every record of a batch durable (nothing may be acked upstream)."""
