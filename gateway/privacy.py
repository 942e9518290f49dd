"""Masking of personal data before it reaches a log line or a caller without PII scope."""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

_DIGIT_RUN = re.compile(r"\d{7,}[\dXx]?")

# How a read-back or a caller may speak each digit (the flows' formats use 零幺二…, 一 and 两 too).
_SPOKEN = {
    "0": "0零〇洞", "1": "1一幺壹", "2": "2二两贰", "3": "3三叁", "4": "4四肆", "5": "5五伍",
    "6": "6六陆", "7": "7七拐柒", "8": "8八捌", "9": "9九勾玖", "X": "Xx叉",
}
# What may stand between two spoken digits: the formats' group spaces, commas, dashes.
_GAP = r"[\s,，、\-]*"
_ANY_DIGIT = "[" + "".join(_SPOKEN.values()) + "]"
# A phone or ID length run of digits, in figures or in words (the shortest phone is 7).
_SPOKEN_RUN = re.compile(_ANY_DIGIT + "(?:" + _GAP + _ANY_DIGIT + "){6,}")


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


def _spoken_pattern(number: str) -> re.Pattern[str]:
    """`number` in figures or in digit words, in any grouping."""
    parts = ["[" + re.escape(_SPOKEN.get(c.upper(), c)) + "]" for c in number if not c.isspace() and c != "-"]
    return re.compile(_GAP.join(parts))


def _is_number(value: str) -> bool:
    plain = value.replace("-", "").replace(" ", "")
    return len(plain) >= 5 and all(c.isdigit() or c in "Xx" for c in plain)


def _mask_run(match: re.Match[str]) -> str:
    return "*" * sum(1 for c in match.group(0) if not (c.isspace() or c in ",，、-"))


def mask_spoken(text: str, secrets: Mapping[str, str]) -> str:
    """Every secret value (a name, phone or ID number → what to show instead) replaced wherever it
    appears, numbers also when read digit by digit in words; then every remaining phone- or
    ID-length run of digits, in figures or words, starred."""
    for value in sorted(secrets, key=len, reverse=True):
        if not value:
            continue
        if _is_number(value):
            text = _spoken_pattern(value).sub(secrets[value], text)
        elif len(value) >= 2:  # a one-character "name" would blank out ordinary words
            text = text.replace(value, secrets[value])
    return _SPOKEN_RUN.sub(_mask_run, text)


def mask_transcript(turns: Iterable[Mapping[str, Any]], secrets: Mapping[str, str]) -> list[dict[str, Any]]:
    """A transcript for a key without PII scope: the caller's words withheld, the bot's masked as above."""
    return [
        {**turn, "text": "(masked)"} if turn.get("speaker") == "caller"
        else {**turn, "text": mask_spoken(turn["text"], secrets)} if isinstance(turn.get("text"), str)
        else dict(turn)
        for turn in turns
    ]
