"""The claim kinds (`relationship`, `incident_type`, `hospital`, `diagnosis`) and the claim roles.

They are read by one joint reader (speech.understanding.claims.ClaimReader): "我爸张建国昨天因为
肺炎住进了华西医院" fills six claim values at once, each found knowing the others. A flow
takes part in it with these kinds, whose role is the kind itself, and with any other slot
that declares a claim `role` (`role: reporter_name` on a person_name slot). `ClaimBinding`
renames the reader's roles to the flow's slot names and back.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Mapping

from ..claims import ROLES, ClaimReader
from ..classify import INCIDENT_TYPES, RELATIONSHIPS
from ..types import CallContext, Extraction
from .base import Dictionaries, Heard, KindError, Options, Reading

CLAIM_KINDS = ("relationship", "incident_type", "hospital", "diagnosis")


def claim_reader(dictionaries: Dictionaries) -> ClaimReader:
    return dictionaries.shared("claim_reader", lambda: ClaimReader(dictionaries.folder))


class ClaimKind:
    """One claim value kind; its words come from its dictionary, its reading from the joint reader."""

    def __init__(self, name: str, options: Mapping[str, Any], dictionaries: Dictionaries) -> None:
        Options(options, set())
        self.name = name
        self._reader = claim_reader(dictionaries)
        self._dictionaries = dictionaries

    def read(self, heard: Heard) -> Reading | None:
        context = CallContext(started_at=heard.now, expected_slot=self.name if heard.asked else None,
                              recognized=heard.recognized)
        extraction = self._reader.extract(heard.text, context)
        found = extraction.values.get(self.name)
        if found is not None:
            return Reading(found.value, found.confidence, found.span)
        problem = extraction.problems.get(self.name)
        return Reading(None, 0.0, problem.span, problem.code) if problem else None

    def normalize(self, raw: str) -> str | None:
        return None if (reading := self.read(Heard(raw, datetime(2000, 1, 1), True, False))) is None else reading.value

    def validate(self, value: str, now: datetime) -> str | None:
        closed = {"relationship": RELATIONSHIPS, "incident_type": INCIDENT_TYPES}.get(self.name)
        if closed is not None:
            return None if value in closed else f"{self.name}_value"
        return None if value.strip() else f"{self.name}_empty"

    def grammar(self) -> None:
        # The joint reader hears whole stories ("我爸昨天在华西医院…"): the full vocabulary, or the
        # slot's own `hints` / `hints_files` (e.g. the dictionary files themselves).
        return None

    def say(self, value: str) -> str:
        return value


def claim_role(kind: str | None, role: str | None) -> str | None:
    """The claim role a slot is read in, or None for a slot the joint reader does not fill."""
    if role is not None:
        if role not in ROLES:
            raise KindError(f"role: unknown claim role {role!r} (known: {', '.join(ROLES)})")
        return role
    return kind if kind in CLAIM_KINDS else None


class ClaimBinding:
    """The joint reader, speaking a flow's slot names: `roles` maps claim role → slot."""

    def __init__(self, reader: ClaimReader, roles: Mapping[str, str]) -> None:
        self.reader = reader
        self.roles = dict(roles)
        self._role_of = {slot: role for role, slot in roles.items()}

    def extract(self, text: str, context: CallContext) -> Extraction:
        expected = context.expected_slot
        role = self._role_of.get(expected or "", expected if expected == "confirm" else None)
        found = self.reader.extract(text, replace(context, expected_slot=role))
        rename = lambda items: {self.roles[k]: replace(v, slot=self.roles[k]) for k, v in items.items()  # noqa: E731
                                if k in self.roles}
        return replace(found, values=rename(found.values), problems=rename(found.problems),
                       about=self.roles.get(found.about or ""),
                       introduced=frozenset(self.roles[k] for k in found.introduced if k in self.roles))
