"""A flow's understanding: its slots' kinds read one utterance together.

Slots with a claim role go to the joint claim reader (kinds/claim.py), all others to their
own kind; the dialogue acts (yes/no, a person please, no thanks) are read for every flow.
A flow with no claim role never loads the claim dictionaries' reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from .acts import DialogueActs
from .claims import compact_text, shanghai
from .kinds import Heard, Kind
from .kinds.claim import ClaimBinding
from .phone import mentions_caller_number
from .types import CallContext, Extraction, SlotProblem, SlotValue


@dataclass(frozen=True)
class SlotKind:
    """One slot as understanding sees it."""

    slot: str
    kind: Kind
    role: str | None = None  # the claim role the joint reader fills it in
    options: Mapping[str, Any] = field(default_factory=dict)


class FlowReader:
    """`extract` per utterance (the engine's Extractor), for one flow's slots."""

    def __init__(self, slots: list[SlotKind], acts: DialogueActs, claim: ClaimBinding | None = None) -> None:
        self.slots = {s.slot: s for s in slots}
        self._own = [s for s in slots if s.role is None]  # read by their kind alone
        self._acts = acts
        self.claim = claim

    def extract(self, text: str, context: CallContext) -> Extraction:
        compact = compact_text(text)
        acts = self._acts.read(compact)
        if self.claim is not None:
            found = self.claim.extract(text, context)
        else:
            found = Extraction(affirm=acts.affirm, wants_human=acts.wants_human)
        values, problems = dict(found.values), dict(found.problems)
        expected = context.expected_slot
        heard = Heard(compact, shanghai(context.started_at), False, context.recognized)
        for spec in self._own:
            asked = spec.slot == expected
            if acts.unknown and asked and not getattr(spec.kind, "hears_unknown", False):
                continue  # "不知道" answers nothing (unless the kind's own words hold it: a survey's 不清楚)
            reading = spec.kind.read(replace(heard, asked=asked))
            if reading is None or spec.slot in values:
                continue
            if reading.value is not None:
                values[spec.slot] = SlotValue(spec.slot, reading.value, round(reading.confidence, 2), reading.span)
            elif reading.problem and asked:
                problems[spec.slot] = SlotProblem(spec.slot, reading.problem, reading.span)
        own_phone = self.slots.get(expected or "")
        use_caller_number = found.use_caller_number or bool(
            own_phone is not None and own_phone.role is None and own_phone.kind.name == "phone"
            and mentions_caller_number(compact))
        correction = found.correction  # the claim reader reads corrections its own way
        if self.claim is None:
            correction = expected == "confirm" and acts.affirm is False and bool(values)  # "不对，打五分"
        return replace(found, values=values, problems=problems, refused=acts.refused,
                       use_caller_number=use_caller_number, correction=correction)
