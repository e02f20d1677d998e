"""Swedish personal identity numbers (personnummer, samordningsnummer): validation. Pure.

A number is YYYYMMDD-NNNC (12 digits; the 10-digit form YYMMDD-NNNC with ``-`` or ``+``
for people over 100 is accepted too). The date must exist; a samordningsnummer adds 60
to the day. C is the Luhn check digit over the 10-digit form. The number itself must
never be logged or put in a topic or URL: this module only says whether it is valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_RE = re.compile(r"^(\d{2})?(\d{2})(\d{2})(\d{2})([-+]?)(\d{3})(\d)$")


class InvalidPersonnummer(ValueError):
    """The value is not a valid personnummer or samordningsnummer (the value is not repeated)."""


@dataclass(frozen=True, slots=True)
class Personnummer:
    """A validated number in its canonical 12-digit form ``YYYYMMDDNNNC``."""

    canonical: str
    birth_date: date
    samordningsnummer: bool

    def masked(self) -> str:
        """For display to users without identity access: birth year only."""
        return f"{self.canonical[:4]}****-****"


def luhn_digit(nine: str) -> int:
    """The check digit for the nine digits YYMMDDNNN."""
    total = 0
    for i, ch in enumerate(nine):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10


def parse(value: str, today: date | None = None) -> Personnummer:
    """Validate and normalise; raises :class:`InvalidPersonnummer` with a reason (never the value)."""
    today = today or date.today()
    m = _RE.match(value.strip().replace(" ", ""))
    if not m:
        raise InvalidPersonnummer("expected YYYYMMDD-NNNC or YYMMDD-NNNC")
    century, yy, mm, dd, sep, serial, check = m.groups()
    day = int(dd)
    samordning = day > 60
    if samordning:
        day -= 60
    if century is None:
        year = today.year - (today.year - int(yy)) % 100  # the latest year not after today
        if sep == "+":
            year -= 100
    else:
        year = int(century + yy)
    try:
        born = date(year, int(mm), day)
    except ValueError as exc:
        raise InvalidPersonnummer("the date part is not a date") from exc
    if born > today:
        raise InvalidPersonnummer("the date part lies in the future")
    if luhn_digit(f"{yy}{mm}{dd}{serial}") != int(check):
        raise InvalidPersonnummer("wrong check digit")
    return Personnummer(f"{year:04d}{mm}{dd}{serial}{check}", born, samordning)


def is_valid(value: str) -> bool:
    try:
        parse(value)
    except InvalidPersonnummer:
        return False
    return True


def synthetic(born: date, serial: int, samordning: bool = False) -> str:
    """A valid-looking number for test and demo data (serial 0-999)."""
    dd = born.day + (60 if samordning else 0)
    nine = f"{born.year % 100:02d}{born.month:02d}{dd:02d}{serial:03d}"
    return f"{born.year:04d}{born.month:02d}{dd:02d}-{serial:03d}{luhn_digit(nine)}"
