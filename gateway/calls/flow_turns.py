"""A flow-driven call (claim report, …) without I/O: caller turns in, what the call must do out.

The dialogue engine (speech.dialogue) decides what to say; this turns its
actions into one call's: prompts become protocol events (and prompts for the
shell to speak where the platform plays audio), the report is saved after every
caller turn so a crash or hang-up never loses what was said, and a transfer or
hang-up ends the call. Saving is a `SaveReport` the shell carries out; the
times of the transcript come in with each turn.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from speech.dialogue.actions import Action, Hangup, Prompt, Report, Transfer
from speech.dialogue.engine import Dialogue, Extractor
from speech.dialogue.flow import Flow
from speech.understanding.types import CallContext

from gateway.calls.core_events import SaveReport
from gateway.log_redaction import without_credentials
from gateway.telephony.base import Adapter, CallStart, Frame

# A call placed for one delivery (an outbound reminder) carries its id in this parameter; such a
# call always ends with a result, also when it was transferred before anything was said.
DELIVERY_PARAM = "delivery_id"


@dataclasses.dataclass
class FlowStep:
    """What one caller event produced, in the order it is carried out: saves, frames, prompts."""

    saves: list[SaveReport] = dataclasses.field(default_factory=list)
    frames: list[Frame] = dataclasses.field(default_factory=list)
    prompts: list[Prompt] = dataclasses.field(default_factory=list)
    end: str | None = None  # "hangup" or "transfer": the call closes after sending


class FlowTurns:
    def __init__(self, adapter: Adapter, start: CallStart, flow: Flow, understanding: Extractor,
                 records: Any, started_at: datetime, report_id: str) -> None:
        self.adapter = adapter
        self.start_event = start
        self.flow = flow
        self.report_id = report_id
        self.transcript: list[dict[str, Any]] = []
        self.final_status: str | None = None
        self.saved = False  # a report of this call is stored (it must not stay in progress)
        context = CallContext(started_at=started_at, caller_number=start.caller_number)
        self.dialogue = Dialogue(flow, understanding, context, records)

    @staticmethod
    def flow_name(start: CallStart) -> str | None:
        return start.flow or start.params.get("flow") or None

    # Caller events (`at`: the wall-clock time, for the transcript) ------------
    def begin(self, at: datetime) -> FlowStep:
        return self._apply(self.dialogue.start(), at)

    def on_text(self, text: str, confidence: float | None, at: datetime,
                alternatives: tuple[str, ...] = ()) -> FlowStep:
        self._note("caller", text, at)
        return self._apply(self.dialogue.on_text(text, confidence, alternatives), at, save=True)

    def expects_more(self, text: str) -> bool:
        """A bare "no" at the read-back, which the caller mostly goes on from (`Dialogue.expects_more`)."""
        return self.final_status is None and self.dialogue.expects_more(text)

    def on_dtmf(self, digits: str, at: datetime) -> FlowStep:
        self._note("caller", f"[keypad] {digits}", at)
        return self._apply(self.dialogue.on_dtmf(digits), at, save=True)

    def on_no_input(self, at: datetime) -> FlowStep:
        self._note("caller", "[no input]", at)
        return self._apply(self.dialogue.on_no_input(), at, save=True)

    def on_hangup(self, at: datetime) -> list[SaveReport]:
        """The caller is gone: the engine's partial report (if any slot was filled) is kept."""
        saves = self._apply(self.dialogue.on_hangup(), at).saves if self.final_status is None else []
        if self.final_status is None and (self.dialogue.slots or self.saved):
            # Whatever the engine said, a report with values, or one already stored, never stays "in progress".
            saves.append(self._snapshot("partial"))
        return saves

    # Actions -----------------------------------------------------------------
    def _apply(self, actions: list[Action], at: datetime, save: bool = False) -> FlowStep:
        out = FlowStep()
        for action in actions:
            if isinstance(action, Prompt):
                self._note("bot", action.text, at, action.slot)
                out.prompts.append(action)
                out.frames += self.adapter.bot_event(
                    {"event": "prompt", "text": action.text, "slot": action.slot, "slots": action.slots}
                )
            elif isinstance(action, Report):
                details = {k: dataclasses.asdict(v) for k, v in action.details.items()}
                out.saves.append(self._save(action.status, action.slots, details, action.policy_number))
                save = False
                out.frames += self.adapter.bot_event(
                    {"event": "report", "report_id": self.report_id, "status": action.status, "slots": action.slots}
                )
            elif isinstance(action, Transfer):
                out.frames += self.adapter.bot_event({"event": "transfer", "reason": action.reason})
                out.frames += self.adapter.transfer(action.reason)
                out.end = "transfer"
                if (self.final_status is None and self.start_event.params.get(DELIVERY_PARAM)
                        and not any(s.status in self.flow.final_statuses for s in out.saves)):
                    out.saves.append(self._save("transferred", self.dialogue.slots, {}, None))
            elif isinstance(action, Hangup):
                out.frames += self.adapter.bot_event({"event": "hangup", "reason": action.reason})
                out.end = "hangup"
        if save and self.final_status is None:
            out.saves.append(self._snapshot("in_progress"))
        return out

    def _snapshot(self, status: str) -> SaveReport:
        """The report as it stands, with its details: if the gateway dies now, recovery delivers this."""
        report = self.dialogue.report(status)
        details = {k: dataclasses.asdict(v) for k, v in report.details.items()}
        return self._save(status, report.slots, details, report.policy_number)

    def _save(self, status: str, slots: dict[str, str], details: dict[str, Any],
              policy_number: str | None) -> SaveReport:
        if status in self.flow.final_statuses:  # the flow's outcomes: delivered, never overwritten
            self.final_status = status
        self.saved = True
        return SaveReport(
            report_id=self.report_id, call_id=self.start_event.call_id, flow=self.flow.name, status=status,
            caller_number=self.start_event.caller_number, slots=slots, details=details,
            transcript=list(self.transcript),  # as it stands now: later turns add to ours
            policy_number=policy_number, topic=self.flow.topic, final_statuses=self.flow.final_statuses,
            params=without_credentials(self.start_event.params),  # the API key never leaves the call
        )

    def _note(self, speaker: str, text: str, at: datetime, slot: str | None = None) -> None:
        entry: dict[str, Any] = {"speaker": speaker, "text": text, "at": at.isoformat()}
        if slot is not None:
            entry["slot"] = slot
        self.transcript.append(entry)
