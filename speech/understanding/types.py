"""What understanding gives the dialogue engine: slot values found in one utterance.

Contract between `speech.understanding` (extractors, normalizers) and
`speech.dialogue` (the form engine). Slot names are a flow's own; what a slot
holds and how it is normalized is its kind's (speech.understanding.kinds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime




@dataclass(frozen=True)
class CallContext:
    started_at: datetime  # timezone-aware; relative dates resolve against it in its own zone
    caller_number: str | None = None
    expected_slot: str | None = None  # the slot the bot just asked for ("confirm" during read-back)
    # the text is a speech recognizer's (homophones, misheard words): read names and yes/no by sound too
    recognized: bool = False
    # what the asked slot already holds (a re-ask, a spelling check): an answer that only corrects
    # part of it ("不是，是立早章") is read against it
    current: str | None = None


@dataclass(frozen=True)
class SlotValue:
    slot: str
    value: str  # normalized per the contract
    confidence: float = 1.0  # 0..1
    span: str = ""  # the words it was read from


@dataclass(frozen=True)
class SlotProblem:
    """Something that looked like a value for the slot but is not valid; drives a specific re-prompt."""

    slot: str
    code: str  # e.g. "id_checksum", "id_length", "id_birth_date", "phone_format", "date_future"
    span: str = ""
    heard: str = ""  # the invalid value as read (an ID's digits), for a tolerant look-up elsewhere


@dataclass(frozen=True)
class Extraction:
    values: dict[str, SlotValue] = field(default_factory=dict)
    problems: dict[str, SlotProblem] = field(default_factory=dict)
    affirm: bool | None = None  # yes (对/是的/没错) / no (不对/不是/错了) / neither
    correction: bool = False  # the caller says something earlier was wrong (不对，… / 错了，是…)
    use_caller_number: bool = False  # "就用这个号码": the phone is the caller's number
    wants_human: bool = False  # 转人工 / 人工客服
    about: str | None = None  # the slot a correction names ("不对，我的手机号是…" → the phone's slot)
    refused: bool = False  # the caller declines the call (不方便 / 不想回答 / 别再打了)
    # slots whose value the words say whose it is ("我叫刘婷": the caller's; "我爸叫…": the insured's),
    # as opposed to a bare value ("不对，刘婷") the flow may have to place itself
    introduced: frozenset[str] = frozenset()
