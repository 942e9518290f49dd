"""The configured flows and the understanding their calls share, loaded from config.

A call's turns through its flow are `gateway.calls.flow_turns.FlowTurns` (no I/O),
driven by the call core; the report it produces is stored by the shell.
"""

from __future__ import annotations

from pathlib import Path

from speech.dialogue.flow import Flow, load_flows
from speech.understanding.extract import Understanding


class Dialogues:
    """The configured flows and the (shared, read-only) understanding."""

    def __init__(self, flows: dict[str, Flow], understanding: Understanding) -> None:
        self.flows = flows
        self.understanding = understanding

    @classmethod
    def from_config(cls, config_dir: Path) -> "Dialogues":
        return cls(load_flows(config_dir / "flows"), Understanding.from_config(config_dir))
