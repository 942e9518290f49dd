"""A flow-driven call (claim report, …): dialogue actions ↔ protocol frames, the stored report.

The dialogue engine (speech.dialogue) decides what to say; this module carries
its actions out for one call: prompts become protocol events (and audio where
the platform plays it), the report is saved after every caller turn so a crash
or hang-up never loses what was said, and its final form queues the delivery.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from speech.dialogue.actions import Action, Hangup, Prompt, Report, Transfer
from speech.dialogue.binding import load_bound_flows
from speech.dialogue.engine import Dialogue, Extractor
from speech.dialogue.flow import Flow
from speech.understanding.types import CallContext

from gateway.storage import reports, results
from gateway.services import Services
from gateway.telephony.base import Adapter, CallStart, Frame

log = logging.getLogger(__name__)


class Dialogues:
    """The configured flows, each bound to its slots' kinds, and each flow's (shared, read-only)
    understanding: the joint claim reader for claim slots, the kinds' own readers for the rest."""

    def __init__(self, flows: dict[str, Flow], understandings: dict[str, Extractor]) -> None:
        self.flows = flows
        self.understandings = understandings

    @classmethod
    def from_config(cls, config_dir: Path) -> "Dialogues":
        bound = load_bound_flows(config_dir)
        return cls({name: flow for name, (flow, _) in bound.items()},
                   {name: reader for name, (_, reader) in bound.items()})


@dataclasses.dataclass
class Outcome:
    """What one caller event produced for the shell."""

    frames: list[Frame] = dataclasses.field(default_factory=list)
    prompts: list[Prompt] = dataclasses.field(default_factory=list)
    end: str | None = None  # "hangup" or "transfer": the shell closes the call after sending


class FlowCall:
    def __init__(self, services: Services, adapter: Adapter, start: CallStart, flow: Flow, started_at: datetime) -> None:
        self.services = services
        self.adapter = adapter
        self.start_event = start
        self.flow = flow
        self.report_id = reports.new_report_id()
        self.transcript: list[dict[str, Any]] = []
        self.final_status: str | None = None
        context = CallContext(started_at=started_at, caller_number=start.caller_number)
        assert services.dialogues is not None
        self.dialogue = Dialogue(flow, services.dialogues.understandings[flow.name], context, services.records)

    @staticmethod
    def flow_name(start: CallStart) -> str | None:
        return start.flow or start.params.get("flow") or None

    # Caller events -----------------------------------------------------------
    async def begin(self) -> Outcome:
        return await self._apply(self.dialogue.start())

    async def on_text(self, text: str, confidence: float | None = None) -> Outcome:
        self._note("caller", text)
        return await self._apply(self.dialogue.on_text(text, confidence), save=True)

    async def on_dtmf(self, digits: str) -> Outcome:
        self._note("caller", f"[keypad] {digits}")
        return await self._apply(self.dialogue.on_dtmf(digits), save=True)

    async def on_no_input(self) -> Outcome:
        self._note("caller", "[no input]")
        return await self._apply(self.dialogue.on_no_input(), save=True)

    async def on_hangup(self) -> None:
        """The caller is gone: the engine's partial report (if any slot was filled) is kept."""
        if self.final_status is None:
            await self._apply(self.dialogue.on_hangup())
        if self.final_status is None and self.dialogue.slots:
            # Whatever the engine said, a report with values never stays "in progress".
            await self._save("partial", self.dialogue.slots, {}, None)

    # Actions -----------------------------------------------------------------
    async def _apply(self, actions: list[Action], save: bool = False) -> Outcome:
        out = Outcome()
        for action in actions:
            if isinstance(action, Prompt):
                self._note("bot", action.text, action.slot)
                out.prompts.append(action)
                out.frames += self.adapter.bot_event(
                    {"event": "prompt", "text": action.text, "slot": action.slot, "slots": action.slots}
                )
            elif isinstance(action, Report):
                details = {k: dataclasses.asdict(v) for k, v in action.details.items()}
                await self._save(action.status, action.slots, details, action.policy_number)
                save = False
                out.frames += self.adapter.bot_event(
                    {"event": "report", "report_id": self.report_id, "status": action.status, "slots": action.slots}
                )
            elif isinstance(action, Transfer):
                out.frames += self.adapter.bot_event({"event": "transfer", "reason": action.reason})
                out.frames += self.adapter.transfer(action.reason)
                out.end = "transfer"
            elif isinstance(action, Hangup):
                out.frames += self.adapter.bot_event({"event": "hangup", "reason": action.reason})
                out.end = "hangup"
        if save and self.final_status is None:
            await self._save("in_progress", self.dialogue.slots, {}, None)
        return out

    async def _save(self, status: str, slots: dict[str, str], details: dict[str, Any], policy_number: str | None) -> None:
        delivery = reports.delivery_for(self.flow.name)  # claim flows keep the claim topic and body
        if status in delivery.final_statuses:
            self.final_status = status
        queued = await results.save(
            self.services.database.engine,
            result_id=self.report_id,
            call_id=self.start_event.call_id,
            flow=self.flow.name,
            status=status,
            caller_number=self.start_event.caller_number,
            slots=slots,
            details=details,
            transcript=self.transcript,
            policy_number=policy_number,
            topic=delivery.topic,
            final_statuses=delivery.final_statuses,
            payload=delivery.payload,
        )
        if queued and self.services.outbox_wake is not None:
            self.services.outbox_wake.set()

    def _note(self, speaker: str, text: str, slot: str | None = None) -> None:
        entry: dict[str, Any] = {"speaker": speaker, "text": text, "at": self.services.now().isoformat()}
        if slot is not None:
            entry["slot"] = slot
        self.transcript.append(entry)
