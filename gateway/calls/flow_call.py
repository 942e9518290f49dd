"""The configured flows and the understanding their calls share, loaded from config.

A call's turns through its flow are `gateway.calls.flow_turns.FlowTurns` (no I/O),
driven by the call core; the report it produces is stored by the shell.
"""

from __future__ import annotations

from pathlib import Path

from speech.dialogue.binding import load_bound_flows
from speech.dialogue.engine import Extractor
from speech.dialogue.flow import Flow


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
