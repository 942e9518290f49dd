"""Masking of personal data before it reaches a log line."""

from __future__ import annotations

import re

_DIGIT_RUN = re.compile(r"\d{7,}[\dXx]?")


def mask_number(value: str | None) -> str:
    """Keep the first three and last two characters of a phone or ID number."""
    if not value:
        return "-"
    if len(value) <= 5:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 5) + value[-2:]


def mask_text(text: str) -> str:
    """Mask every long digit run (phones, ID numbers) inside free text."""
    return _DIGIT_RUN.sub(lambda m: mask_number(m.group(0)), text)
