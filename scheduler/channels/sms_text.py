"""What an SMS costs and how it reads on the handset: the 【signature】, the opt-out line, segments.

Mainland carriers count characters, not bytes: a Chinese character, a letter, a digit, a
punctuation mark and a space are one each, and the 【signature】 the provider prepends counts too.
Up to 70 characters is one billed message; a longer one is sent as a long message billed per 67
characters (each part loses three to the concatenation header). Marketing messages must carry
an opt-out line ("拒收请回复R"); service messages (renewal due, documents missing) need not.
Pure functions, no I/O.
"""

from __future__ import annotations

import math

SINGLE_LIMIT = 70
PART_LIMIT = 67
DEFAULT_OPT_OUT = "拒收请回复R"


def signed(text: str, sign_name: str) -> str:
    """The message as it arrives: 【sign_name】 first (an already bracketed name is kept as it is)."""
    if not sign_name:
        return text
    sign = sign_name if sign_name.startswith("【") else f"【{sign_name}】"
    return text if text.startswith(sign) else sign + text


def with_opt_out(text: str, purpose: str, opt_out_line: str = DEFAULT_OPT_OUT) -> str:
    """Marketing messages end with the opt-out line (once); service messages are unchanged."""
    if purpose != "marketing" or not opt_out_line or text.rstrip().endswith(opt_out_line):
        return text
    return text + opt_out_line


def length(text: str) -> int:
    """Characters as carriers count them: one per code point (CR LF counts as two)."""
    return len(text)


def segments(chars: int) -> int:
    if chars <= 0:
        return 0
    if chars <= SINGLE_LIMIT:
        return 1
    return math.ceil(chars / PART_LIMIT)


def compose(text: str, *, sign_name: str, purpose: str = "service", opt_out_line: str = DEFAULT_OPT_OUT) -> tuple[str, int]:
    """(the full message the customer reads, how many billed messages it is)."""
    full = signed(with_opt_out(text, purpose, opt_out_line), sign_name)
    return full, segments(length(full))
