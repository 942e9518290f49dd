"""Sending the survey's one-time codes by SMS, through the reminders' channels.

The channel is the one `settings.survey_otp_provider` names (aliyun_sms, tencent_sms), built by
the scheduler's registry exactly as the dispatcher builds its own, from the same settings. The
code travels as the template parameter `code` of `survey_otp_template`; `survey_otp_text` is the
message as the customer reads it (for the provider's length and billing checks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.privacy import mask_number
from gateway.settings import Settings
from scheduler.channels.base import Accepted, Channel, OutboundMessage, SendError
from scheduler.registry import ChannelContext, LateSink, channel_factories

log = logging.getLogger(__name__)


class CodeNotSent(Exception):
    """The code could not go out (no channel configured, or the provider refused)."""


@dataclass
class CodeSender:
    channel: Channel | None
    template: str
    text: str
    provider: str

    @classmethod
    def from_settings(cls, settings: Settings, engine: AsyncEngine | None) -> "CodeSender":
        factory = channel_factories().get(settings.survey_otp_provider)
        channel = factory(ChannelContext(settings, engine, LateSink())) if factory is not None else None
        if channel is None:
            log.warning("survey codes cannot be sent: channel %r is not configured", settings.survey_otp_provider)
        elif channel.kind != "sms":
            log.warning("survey codes: %r is not an SMS channel", settings.survey_otp_provider)
            channel = None
        return cls(channel, settings.survey_otp_template, settings.survey_otp_text, settings.survey_otp_provider)

    async def send(self, *, delivery_id: str, phone: str, code: str) -> Accepted:
        """Send `code` to `phone`; the provider's acceptance (its id goes in the audit) or CodeNotSent."""
        if self.channel is None:
            raise CodeNotSent(f"{self.provider} is not configured")
        message = OutboundMessage(delivery_id=delivery_id, kind="sms", to=phone, template=self.template,
                                  params={"code": code}, text=self.text.replace("{code}", code), purpose="service")
        try:
            return await self.channel.send(message)
        except SendError as exc:
            log.warning("survey code to %s not sent: %s", mask_number(phone), exc)
            raise CodeNotSent(str(exc)) from exc

    async def aclose(self) -> None:
        if self.channel is not None:
            await self.channel.aclose()
