"""Everything a request handler may use, built once per app and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from speech.dialogue.records import RecordIndex

from gateway.storage import policies
from gateway.auth import Authenticator
from gateway.calls.registry import CallRegistry
from gateway.storage.database import Database
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.calls.speech_service import SpeechService
from gateway.startup import Startup


@dataclass
class Services:
    settings: Settings
    auth: Authenticator
    registry: CallRegistry
    metrics: Metrics
    database: Database
    # None until the background start has loaded the model (startup.ready); calls wait for that.
    speech: SpeechService | None = None
    startup: Startup = field(default_factory=Startup)
    records: RecordIndex = field(default_factory=lambda: RecordIndex(()))
    dialogues: Any = None  # gateway.calls.flow_call.Dialogues, when flows are configured
    outbox_wake: Any = None  # asyncio.Event of the outbox worker, when delivery is configured
    tts: Any = None  # speech.tts.Synthesizer speaking prompts on platforms that play audio
    # Called with each final flow result once it is stored (gateway.calls.core_events.SaveReport).
    result_listeners: list[Any] = field(default_factory=list)
    # Called with each call's CallStart before its flow starts: async, returning values the flow
    # gets from the gateway itself (core_events.CallStarted.server_params).
    call_preparers: list[Any] = field(default_factory=list)
    receipt_sink: Any = None  # scheduler.channels.base.ReceiptSink for provider callbacks, when wired
    instance_id: str | None = None  # this process in `instances`: the owner written on its calls and results
    reminders: Any = None  # scheduler.dispatcher.Dispatcher: campaigns, receipt sink, admin API

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.timezone)

    def now(self) -> datetime:
        return datetime.now(self.zone)

    def today(self) -> date:
        return self.now().date()

    async def reload_records(self) -> None:
        """Policy records changed: rebuild the in-memory look-up index calls use."""
        self.records = await policies.load_index(self.database.engine)
