"""Which channels the scheduler can send on: provider name -> a factory building it from settings.

Explicit on purpose: a provider's module adds one line to `channel_factories`. A factory returns
None when its settings are not filled in (no credentials, no gateway): campaign steps name
providers, and a step whose provider is not built is skipped to its next channel, said in the log.
Factories get the settings, the database engine (WeChat's token is shared through it) and the
sink of receipts (FreeSWITCH reports its calls' progress over its own Event Socket connection).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.settings import Settings
from scheduler.channels import aliyun_sms, aliyun_voice, freeswitch_voice, tencent_sms, twilio_voice, wechat
from scheduler.channels.base import Channel, Receipt, ReceiptSink, Reply

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelContext:
    settings: Settings
    engine: AsyncEngine | None
    sink: ReceiptSink


ChannelFactory = Callable[[ChannelContext], "Channel | None"]


class LateSink:
    """A ReceiptSink to hand channels before the scheduler's own sink exists (it is built from them)."""

    def __init__(self) -> None:
        self.target: ReceiptSink | None = None

    async def receipts(self, items: Sequence[Receipt]) -> None:
        if self.target is None:
            raise RuntimeError("receipts arrived before the scheduler was ready")
        await self.target.receipts(items)

    async def replies(self, items: Sequence[Reply]) -> None:
        if self.target is None:
            raise RuntimeError("replies arrived before the scheduler was ready")
        await self.target.replies(items)


def _aliyun_sms(c: ChannelContext) -> Channel | None:
    s = c.settings
    return aliyun_sms.from_settings(s) if s.aliyun_access_key_id and s.aliyun_sms_sign_name else None


def _aliyun_voice(c: ChannelContext) -> Channel | None:
    s = c.settings
    return aliyun_voice.from_settings(s) if s.aliyun_access_key_id and s.aliyun_access_key_secret else None


def _tencent_sms(c: ChannelContext) -> Channel | None:
    s = c.settings
    return tencent_sms.from_settings(s) if s.tencent_secret_id and s.tencent_sms_app_id else None


def _wechat(c: ChannelContext) -> Channel | None:
    s = c.settings
    if not (s.wechat_app_id and s.wechat_app_secret) or c.engine is None:
        return None
    return wechat.from_settings(s, c.engine)


def _twilio_voice(c: ChannelContext) -> Channel | None:
    s = c.settings
    if not (s.twilio_account_sid and s.twilio_auth_token and s.twilio_from_number and s.public_url):
        return None
    return twilio_voice.from_settings(s)


def _freeswitch_voice(c: ChannelContext) -> Channel | None:
    return freeswitch_voice.from_settings(c.settings, c.sink) if c.settings.freeswitch_gateway else None


def channel_factories() -> dict[str, ChannelFactory]:
    """Provider name (as campaign steps name it) -> factory."""
    return {
        aliyun_sms.PROVIDER: _aliyun_sms,
        tencent_sms.PROVIDER: _tencent_sms,
        wechat.PROVIDER: _wechat,
        aliyun_voice.PROVIDER: _aliyun_voice,
        twilio_voice.PROVIDER: _twilio_voice,
        freeswitch_voice.PROVIDER: _freeswitch_voice,
    }


def build_channels(context: ChannelContext | Settings,
                   factories: Mapping[str, ChannelFactory] | None = None) -> dict[str, Channel]:
    if isinstance(context, Settings):  # no engine, no sink: the channels that need neither
        context = ChannelContext(context, None, LateSink())
    channels: dict[str, Channel] = {}
    for name, factory in (channel_factories() if factories is None else factories).items():
        channel = factory(context)
        if channel is not None:
            channels[name] = channel
    log.info("reminder channels: %s", ", ".join(sorted(channels)) or "none configured")
    return channels
