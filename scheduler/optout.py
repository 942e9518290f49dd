"""Opt-outs from what recipients send back: SMS reply keywords, WeChat events, a refused call.

Pure. An SMS reply that is only an opt-out keyword (TD, T, R, N, 退订, 取消, 拒收, STOP, in
full-width letters too, any case, with punctuation around) opts the number out of marketing
SMS. WeChat `unsubscribe` (unfollowed) and a block of template messages opt the openid out of
WeChat. A voice call whose outcome is `refused` ("别再打了") puts the number on the
do-not-call list (every voice purpose).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

SMS_KEYWORDS = frozenset({"TD", "T", "R", "N", "STOP", "退订", "取消", "拒收", "UNSUBSCRIBE"})
WECHAT_EVENTS = frozenset({"unsubscribe", "block", "template_refused"})
_STRIP = " \t\r\n。.!！,，、~～?？'\"“”‘’【】[]()（）"


@dataclass(frozen=True)
class OptOut:
    recipient: str
    channel: str  # sms, wechat, voice, or * for every channel
    purpose: str  # service, marketing, or * for every purpose
    source: str


def normalize(text: str) -> str:
    """Full-width to ASCII (ＴＤ -> TD), upper case, surrounding punctuation and spaces removed."""
    return unicodedata.normalize("NFKC", text).strip(_STRIP).upper()


def sms_opt_out(sender: str, text: str) -> OptOut | None:
    if normalize(text) in SMS_KEYWORDS:
        return OptOut(sender, "sms", "marketing", "sms_reply")
    return None


def wechat_opt_out(openid: str, event: str | None) -> OptOut | None:
    if event and event.lower() in WECHAT_EVENTS:
        return OptOut(openid, "wechat", "*", f"wechat_{event.lower()}")
    return None


def voice_opt_out(number: str, outcome: str | None) -> OptOut | None:
    if outcome == "refused":
        return OptOut(number, "voice", "*", "voice_refused")
    return None
