"""Unit tests of the opaque cursor."""

from __future__ import annotations

import pytest

from api.pagination import decode_cursor, encode_cursor, next_cursor
from api.problems import ProblemError


def test_cursor_round_trip_and_next() -> None:
    key = ["2026-11-23T08:00:00+00:00", 42]
    assert decode_cursor(encode_cursor(key), 2) == key
    assert decode_cursor(None, 2) is None
    rows = [{"id": i} for i in range(4)]
    assert decode_cursor(next_cursor(rows, 3, lambda r: [r["id"]]), 1) == [2]
    assert next_cursor(rows[:3], 3, lambda r: [r["id"]]) is None


@pytest.mark.parametrize("bad", ["%%%", "bm90IGpzb24", encode_cursor([1, 2, 3]), encode_cursor([{"a": 1}])])
def test_malformed_cursor_is_400(bad: str) -> None:
    with pytest.raises(ProblemError) as e:
        decode_cursor(bad, 2)
    assert e.value.status == 400
