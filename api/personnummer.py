"""Swedish personal identity numbers (personnummer) and coordination numbers (samordningsnummer).

Validated by date part and Luhn check digit; normalised to ``YYYYMMDDNNNN``. Pure. Never log one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_RE = re.compile(
    r"^(?P<century>\d{2})?(?P<yy>\d{2})(?P<mm>\d{2})(?P<dd>\d{2})(?P<sep>[-+]?)(?P<serial>\d{3})(?P<check>\d)$"
)


class InvalidPersonnummer(ValueError):
    """Not a valid personnummer/samordningsnummer (the message never repeats the number)."""


@dataclass(frozen=True, slots=True)
class Personnummer:
    normalised: str  # YYYYMMDDNNNN
    coordination: bool  # samordningsnummer (day + 60)

    @property
    def birth_date(self) -> date:
        day = int(self.normalised[6:8]) - (60 if self.coordination else 0)
        return date(int(self.normalised[:4]), int(self.normalised[4:6]), day)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(digits):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def parse(text: str, today: date | None = None) -> Personnummer:
    """Validate and normalise; raises :class:`InvalidPersonnummer`."""
    m = _RE.match(text.strip())
    if not m:
        raise InvalidPersonnummer("not of the form YYYYMMDD-NNNN or YYMMDD-NNNN")
    yy, mm, dd, serial, check = m["yy"], m["mm"], m["dd"], m["serial"], m["check"]
    if not luhn_ok(yy + mm + dd + serial + check):
        raise InvalidPersonnummer("check digit does not match")
    today = today or date.today()
    if m["century"]:
        year = int(m["century"] + yy)
        if m["sep"] == "+":
            raise InvalidPersonnummer("'+' is only used with a two-digit year")
    else:
        year = (today.year // 100) * 100 + int(yy)
        if year > today.year:
            year -= 100
        if m["sep"] == "+":
            year -= 100
    day = int(dd)
    coordination = day > 60
    try:
        born = date(year, int(mm), day - 60 if coordination else day)
    except ValueError:
        raise InvalidPersonnummer("date part is not a date") from None
    if born > today:
        raise InvalidPersonnummer("date part is in the future")
    return Personnummer(f"{year:04d}{mm}{dd}{serial}{check}", coordination)


def display(normalised: str) -> str:
    """``YYYYMMDD-NNNN`` for people reading it."""
    return f"{normalised[:8]}-{normalised[8:]}"
