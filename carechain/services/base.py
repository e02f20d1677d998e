"""What every local service offers the harness, and the failures it reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class ServiceError(RuntimeError):
    """A service could not be installed, started, checked or stopped."""


@dataclass(frozen=True)
class ServiceStatus:
    """One row of ``carechain services status``."""

    name: str
    healthy: bool
    address: str
    pid: int | None
    detail: str


class Service(Protocol):
    """A local service the harness manages (one per module)."""

    name: str

    def install(self) -> None:
        """Make the binaries available (idempotent; a no-op when present)."""

    def start(self) -> bool:
        """Start and wait until healthy; False when it was already running."""

    def stop(self) -> bool:
        """Stop gracefully; False when it was not running."""

    def status(self) -> ServiceStatus:
        """Is it up and answering a real client?"""
