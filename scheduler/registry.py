"""Which channels the scheduler can send on: provider name -> a factory building it from settings.

Explicit on purpose: a provider's module adds one line to `channel_factories` (its factory
returns None when its settings are not filled in, e.g. no credentials). Campaign steps name
providers; a step whose provider is not built is skipped to its next channel, said in the log.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping

from gateway.settings import Settings
from scheduler.channels.base import Channel

log = logging.getLogger(__name__)

ChannelFactory = Callable[[Settings], "Channel | None"]


def channel_factories() -> dict[str, ChannelFactory]:
    """Provider name -> factory. Add providers here (e.g. "aliyun_sms": aliyun_sms.from_settings)."""
    return {}


def build_channels(settings: Settings, factories: Mapping[str, ChannelFactory] | None = None) -> dict[str, Channel]:
    channels: dict[str, Channel] = {}
    for name, factory in (channel_factories() if factories is None else factories).items():
        channel = factory(settings)
        if channel is not None:
            channels[name] = channel
    log.info("reminder channels: %s", ", ".join(sorted(channels)) or "none configured")
    return channels
