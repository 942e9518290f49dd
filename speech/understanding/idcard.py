"""Resident ID numbers (GB 11643-1999): 17 digits and a check character."""

from __future__ import annotations

import re
from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"  # indexed by (weighted sum mod 11)
ID_RE = re.compile(r"\d{17}[\dX]")


def check_character(first17: str) -> str:
    """The check character for the first 17 digits (ISO 7064 MOD 11-2)."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS))
    return _CHECK_CHARS[total % 11]


def normalize_id(raw: str) -> str:
    """Upper-case X, no separators."""
    return re.sub(r"[\s\-]", "", raw).upper()


def birth_date(number: str) -> date | None:
    """The birth date encoded in positions 7-14, or None if it is not a calendar date."""
    try:
        return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None


def id_problem(number: str, today: date) -> str | None:
    """Why number is not a valid ID for someone alive today, or None if it is valid.

    Codes: "id_length" (not 17 digits + check character), "id_region" (first digit
    not 1-8), "id_birth_date" (not a date, before 1900 or after today),
    "id_checksum" (check character wrong).
    """
    number = normalize_id(number)
    if not ID_RE.fullmatch(number):
        return "id_length"
    if number[0] not in "12345678":
        return "id_region"
    born = birth_date(number)
    if born is None or born.year < 1900 or born > today:
        return "id_birth_date"
    if check_character(number[:17]) != number[17]:
        return "id_checksum"
    return None


def is_valid_id(number: str, today: date) -> bool:
    return id_problem(number, today) is None
