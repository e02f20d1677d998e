"""Cursor pagination: the cursor is opaque to clients (base64url of the last row's sort key)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from api.problems import ProblemError

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    """One page of results; pass ``next_cursor`` as ``cursor`` to get the next (null: no more)."""

    items: list[T]
    next_cursor: str | None = Field(default=None, examples=["WyIyMDI2LTExLTIzVDA4OjAwOjAwKzAwOjAwIiwgNDJd"])
    restricted: bool = Field(default=False, description="Restricted (blocked) data exist that are not shown")


def encode_cursor(key: Sequence[Any]) -> str:
    raw = json.dumps(list(key), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    """The sort key a cursor stands for; a malformed cursor is a 400 problem."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ProblemError(400, "Malformed cursor", slug="bad-cursor") from None
    if not isinstance(key, list) or len(key) != arity or not all(isinstance(k, (str, int)) for k in key):
        raise ProblemError(400, "Malformed cursor", slug="bad-cursor")
    return key


def next_cursor(rows: Sequence[Any], limit: int, key_of: Any) -> str | None:
    """A cursor after the last row when the page is full (the store fetched ``limit + 1``)."""
    if len(rows) <= limit:
        return None
    return encode_cursor(key_of(rows[limit - 1]))
