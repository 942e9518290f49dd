"""What every channel is: one send call with our delivery id, typed errors, and the receipts and
replies that come back on webhooks.

A channel speaks one provider's API (Aliyun SMS, Tencent SMS, WeChat, Twilio or FreeSWITCH voice
calls, Aliyun voice notification). The scheduler knows only this module: it hands a channel an
`OutboundMessage`, gets `Accepted` (the provider's id) or a `SendError` that says whether trying
again can help and whether the next channel should take over, and later hears `Receipt`s and
`Reply`s through a `ReceiptSink`. Receipts may arrive twice or out of order; the sink makes
applying one idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Mapping, Protocol, Sequence

ChannelKind = Literal["sms", "wechat", "voice"]

# Final or intermediate states a receipt reports, provider words mapped onto ours.
ReceiptStatus = Literal[
    "delivered",  # SMS on the handset, WeChat message delivered, voice notification played
    "failed",  # the provider gave up (error code in `error`)
    "read",  # WeChat: opened, where the provider says so
    "ringing", "answered", "completed", "busy", "no_answer", "machine",  # voice calls
]


@dataclass(frozen=True)
class OutboundMessage:
    delivery_id: str  # ours, unique per reminder row; travels with the send (OutId, SessionContext, ...)
    kind: ChannelKind
    to: str  # phone number (E.164 or 11-digit mainland) or WeChat openid
    template: str  # the provider's template code / id, from the campaign
    params: Mapping[str, str]  # template variables
    text: str  # the message as the customer reads or hears it (for length, billing and voice TTS)
    purpose: Literal["service", "marketing"] = "service"  # marketing SMS carry the opt-out line
    extra: Mapping[str, Any] = field(default_factory=dict)  # channel options (e.g. voice: flow, machine policy)


@dataclass(frozen=True)
class Accepted:
    provider: str  # e.g. "aliyun_sms"
    provider_id: str | None  # BizId, SerialNo, msgid, call SID, origination uuid
    segments: int = 1  # SMS billing segments (70 characters, then 67 each)


class SendError(Exception):
    """A send that did not go through.

    `retryable`: the same send may succeed later (network, throttling, 5xx); a rejected number or
    template is not. `fall_through`: this channel cannot reach the recipient now (WeChat 43004
    not following, 43101 refused), so the next channel of the step should be tried at once.
    `maybe_sent`: the provider may have accepted it (timeout after the request went out); the
    row is reconciled from receipts rather than sent again.
    """

    def __init__(self, provider: str, code: str, message: str, *, retryable: bool = False,
                 fall_through: bool = False, maybe_sent: bool = False) -> None:
        super().__init__(f"{provider}: {code}: {message}")
        self.provider = provider
        self.code = code
        self.retryable = retryable
        self.fall_through = fall_through
        self.maybe_sent = maybe_sent


class Channel(Protocol):
    name: str  # provider name, e.g. "aliyun_sms", "tencent_sms", "wechat", "twilio_voice"
    kind: ChannelKind

    async def send(self, message: OutboundMessage) -> Accepted: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class Receipt:
    provider: str
    status: ReceiptStatus
    at: datetime  # aware
    provider_id: str | None = None
    delivery_id: str | None = None  # when the provider echoes ours back (OutId, SessionContext)
    error: str | None = None  # provider's error code or description
    outcome: str | None = None  # voice: the reminder flow's outcome (acknowledged, renewed, agent, refused)
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    provider: str
    sender: str  # phone number or openid
    at: datetime
    text: str = ""  # SMS reply text
    event: str | None = None  # WeChat: "unsubscribe", "block" (template messages refused), ...
    raw: Mapping[str, Any] = field(default_factory=dict)


class ReceiptSink(Protocol):
    """Where webhooks hand what providers report; the scheduler implements it."""

    async def receipts(self, items: Sequence[Receipt]) -> None: ...

    async def replies(self, items: Sequence[Reply]) -> None: ...
