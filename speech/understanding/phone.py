"""Contact numbers: mainland mobiles, landlines with area code, "this number"."""

from __future__ import annotations

import re

MOBILE_RE = re.compile(r"1[3-9]\d{9}")
# Area codes: 010 and 02x are three digits, all others four (0xxx).
LANDLINE_RE = re.compile(r"(0(?:10|2\d))(\d{8})|(0[3-9]\d{2})(\d{7,8})")

# "就用这个号码", "就是这个来电号码", "打进来的这个号", "就打我现在这个号", "本机号码"
_CALLER_NUMBER_RE = re.compile(
    r"(来电|本机|打进来|打过来|正在打|现在打|现在用|现在这个|这个|这部|当前)"
    r"[的这个我用]{0,4}(手机号码|手机号|号码|电话|手机|号)"
)
# "就是我现在打的这个", "打进来的那个": the number itself left unsaid
_CALLER_NUMBER_BARE_RE = re.compile(r"(?:现在|正在)(?:打|用)的(?:这个|这部)|打(?:进来|过来)的(?:这个|那个)|(?:用|打)(?:我)?(?:这个|本机)就(?:行|可以)")
_SPACES_RE = re.compile(r"\s+")
_NEGATED_RE = re.compile(r"(不|别|不要|不能|不用|换)(用|是|打)?(这个|本机|来电)")


def normalize_phone(digits: str) -> str | None:
    """The contract's form of a phone number given as digits, or None if it is not one.

    Mobile: "13812345678"; landline: "010-12345678" / "0755-1234567".
    A leading country code 86 / 0086 is dropped.
    """
    digits = re.sub(r"\D", "", digits)
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) == 11 and digits[len(prefix)] == "1":
            digits = digits[len(prefix):]
    if MOBILE_RE.fullmatch(digits):
        return digits
    m = LANDLINE_RE.fullmatch(digits)
    if m:
        area, number = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        return f"{area}-{number}"
    return None


def phone_problem(digits: str) -> str | None:
    """'phone_format' unless digits form a mobile or landline number."""
    return None if normalize_phone(digits) else "phone_format"


def looks_like_phone(digits: str) -> bool:
    return normalize_phone(digits) is not None


def mentions_caller_number(text: str) -> bool:
    """Does the caller say "use the number I am calling from"?"""
    compact = _SPACES_RE.sub("", text)
    if not (_CALLER_NUMBER_RE.search(compact) or _CALLER_NUMBER_BARE_RE.search(compact)):
        return False
    return not _NEGATED_RE.search(compact)
