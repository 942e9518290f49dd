"""A flow bound to its slots' kinds: each slot's default grammar filled in, and its reader.

`bind` is where a flow's data meets speech.understanding: every slot names a kind (found in
the kinds registry), slots with a claim role share the joint claim reader, and a slot with no
`hints` of its own listens with its kind's grammar (plus `more_hints`), and one with no
`readback` is read back in its kind's words ("4" → "4分"). Errors name the flow file and key,
like the flow loader's.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from speech.dialogue.flow import Flow, FlowError, SayFormat, Variant, load_flows
from speech.understanding.kinds import KindError, KindRegistry
from speech.understanding.kinds.claim import ClaimBinding, claim_reader, claim_role
from speech.understanding.reader import FlowReader, SlotKind


def bind(flow: Flow, registry: KindRegistry) -> tuple[Flow, FlowReader]:
    source = str(flow.path) if flow.path is not None else f"<flow {flow.name}>"
    acts = registry.dictionaries.acts()
    # a narrow grammar must still hear "a person, please" and, where the flow answers it, "no thanks"
    always = (*acts.human_words, *(acts.refuse_words if flow.refused else ()))
    slots, readers, roles = [], [], {}
    formats = dict(flow.formats)
    for i, spec in enumerate(flow.slots):
        key = f"slots[{i}]({spec.name})"
        if spec.kind is None:
            raise FlowError(f"{source}: {key}.kind: missing (known: {', '.join(sorted(registry.kinds))})")
        try:
            kind = registry.make(spec.kind, spec.options)
            role = claim_role(spec.kind, spec.role)
        except KindError as e:
            raise FlowError(f"{source}: {key}.{e}") from None
        if role is not None:
            if role in roles:
                raise FlowError(f"{source}: {key}.role: {role!r} is also the role of slot {roles[role]!r}")
            roles[role] = spec.name
        hints = spec.hints
        if hints is None and role is None:
            # the joint reader's slots hear whole stories: their own hints, or the full vocabulary
            grammar = kind.grammar()
            hints = tuple(dict.fromkeys((*grammar, *spec.more_hints, *always))) if grammar is not None else None
        elif spec.more_hints:
            hints = tuple(dict.fromkeys((*(hints or ()), *spec.more_hints)))
        readback = spec.readback
        if not readback:
            name = f"_kind_{spec.name}"
            formats.setdefault(name, SayFormat(kind.say))
            readback = (Variant("{" + spec.name + ":" + name + "}"),)
        slots.append(replace(spec, hints=hints, readback=readback))
        readers.append(SlotKind(spec.name, kind, role, spec.options))
    claim = ClaimBinding(claim_reader(registry.dictionaries), roles) if roles else None
    reader = FlowReader(readers, acts, claim)
    return replace(flow, slots=tuple(slots), formats=formats), reader


def load_bound_flows(config_dir: Path) -> dict[str, tuple[Flow, FlowReader]]:
    """Every flow of `config_dir/flows`, bound to the kinds of `config_dir/dictionaries`."""
    registry = KindRegistry.from_config(config_dir)
    return {name: bind(flow, registry) for name, flow in load_flows(Path(config_dir) / "flows").items()}
