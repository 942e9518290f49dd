"""What the dialogue engine asks the shell to do. Plain frozen data; the shell maps them to protocol events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

# speech: recognized; text: typed (a chat channel, the generic `text` event); dtmf: keypad
Source = Literal["speech", "text", "dtmf", "record", "caller_id", "derived"]
# "complete", "partial", "transferred", "refused", or an outcome the flow defines ("problem")
ReportStatus = str


@dataclass(frozen=True)
class Prompt:
    """The bot speaks `text`; `slot` is the slot asked for, "confirm" for the read-back, or None."""

    text: str
    slot: str | None
    slots: dict[str, str]  # every value filled so far, normalized (a copy; the engine keeps its own)
    hints: tuple[str, ...] | None = None  # phrases likely in the answer (recognizer vocabulary bias)
    dtmf: bool = False  # the prompt invites keypad entry
    alternatives: int = 0  # n-best recognitions wanted with the answer (a rejected value asked again)


@dataclass(frozen=True)
class SlotDetail:
    value: str
    confidence: float
    turn: int  # the caller utterance (1-based) that gave the value; 0 = before the caller spoke
    source: Source
    # False: the caller said it is wrong and it could not be got right on the call (a person checks it)
    confirmed: bool = True


@dataclass(frozen=True)
class Report:
    """The call's result as it stands (the flow's `result.store` slots); `dataclasses.asdict(report)`
    is its JSON form."""

    status: ReportStatus  # the outcome
    slots: dict[str, str]
    details: dict[str, SlotDetail]
    policy_number: str | None = None  # the policy record the report was matched to, if any
    flow: str = ""
    topic: str = ""  # where the result is delivered (`result.topic`; default: the flow's name)


@dataclass(frozen=True)
class Transfer:
    reason: str  # "caller_request", "no_match", "no_input", "too_many_turns"


@dataclass(frozen=True)
class Hangup:
    reason: str  # "completed", "refused"


Action = Union[Prompt, Report, Transfer, Hangup]

__all__ = ["Action", "Hangup", "Prompt", "Report", "ReportStatus", "SlotDetail", "Source", "Transfer"]
