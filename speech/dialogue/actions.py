"""What the dialogue engine asks the shell to do. Plain frozen data; the shell maps them to protocol events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

Source = Literal["speech", "dtmf", "record", "caller_id", "derived"]
ReportStatus = Literal["complete", "partial", "transferred"]


@dataclass(frozen=True)
class Prompt:
    """The bot speaks `text`; `slot` is the slot asked for, "confirm" for the read-back, or None."""

    text: str
    slot: str | None
    slots: dict[str, str]  # every value filled so far, normalized (a copy; the engine keeps its own)
    hints: tuple[str, ...] | None = None  # phrases likely in the answer (recognizer vocabulary bias)
    dtmf: bool = False  # the prompt invites keypad entry


@dataclass(frozen=True)
class SlotDetail:
    value: str
    confidence: float
    turn: int  # the caller utterance (1-based) that gave the value; 0 = before the caller spoke
    source: Source


@dataclass(frozen=True)
class Report:
    """The claim report as it stands; `dataclasses.asdict(report)` is its JSON form."""

    status: ReportStatus
    slots: dict[str, str]
    details: dict[str, SlotDetail]
    policy_number: str | None = None  # the policy record the report was matched to, if any
    flow: str = ""


@dataclass(frozen=True)
class Transfer:
    reason: str  # "caller_request", "no_match", "no_input", "too_many_turns"


@dataclass(frozen=True)
class Hangup:
    reason: str  # "completed"


Action = Union[Prompt, Report, Transfer, Hangup]

__all__ = ["Action", "Hangup", "Prompt", "Report", "ReportStatus", "SlotDetail", "Source", "Transfer"]
