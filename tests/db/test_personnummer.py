"""Personnummer validation (pure)."""

from __future__ import annotations

from datetime import date

import pytest

from carechain.personnummer import InvalidPersonnummer, is_valid, luhn_digit, parse, synthetic


def test_known_valid_numbers() -> None:
    # Skatteverket's published test number 19121212-1212.
    p = parse("19121212-1212", today=date(2026, 11, 23))
    assert p.canonical == "191212121212" and p.birth_date == date(1912, 12, 12) and not p.samordningsnummer
    assert parse("121212+1212", today=date(2026, 11, 23)).birth_date == date(1912, 12, 12)
    assert luhn_digit("811218987") == 6


def test_samordningsnummer_adds_sixty_to_the_day() -> None:
    n = synthetic(date(1940, 3, 5), 123, samordning=True)
    p = parse(n)
    assert p.samordningsnummer and p.birth_date == date(1940, 3, 5)


@pytest.mark.parametrize(
    "value",
    ["19121212-1213", "19121332-1212", "19990230-1234", "abc", "", "1912121212120", "21121212-1212"],
)
def test_invalid_numbers_are_refused_without_echoing(value: str) -> None:
    with pytest.raises(InvalidPersonnummer) as exc:
        parse(value, today=date(2026, 11, 23))
    assert value not in str(exc.value) or value == ""
    assert not is_valid(value)


def test_synthetic_numbers_validate() -> None:
    for i in range(200):
        assert is_valid(synthetic(date(1930 + i % 50, 1 + i % 12, 1 + i % 28), i))
