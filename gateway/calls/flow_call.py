"""The configured flows and the understanding their calls share, loaded from config.

A call's turns through its flow are `gateway.calls.flow_turns.FlowTurns` (no I/O),
driven by the call core; the report it produces is stored by the shell. Besides the flows of
config/flows, every survey of the surveys directory is a flow (`survey_<name>`,
gateway.calls.survey_voice).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speech.dialogue.binding import load_bound_flows
from speech.dialogue.engine import Extractor
from speech.dialogue.flow import Flow, FlowError
from speech.understanding.kinds import KindRegistry

from gateway.calls.survey_voice import survey_flows, surveys_path


class Dialogues:
    """The configured flows, each bound to its slots' kinds, and each flow's (shared, read-only)
    understanding: the joint claim reader for claim slots, the kinds' own readers for the rest.
    `surveys`: the survey definition of each survey flow, by flow name."""

    def __init__(self, flows: dict[str, Flow], understandings: dict[str, Extractor],
                 surveys: dict[str, Any] | None = None) -> None:
        self.flows = flows
        self.understandings = understandings
        self.surveys = surveys or {}

    @classmethod
    def from_config(cls, config_dir: Path, surveys_dir: str | Path | None = None) -> "Dialogues":
        bound = load_bound_flows(config_dir)
        voice, surveys = survey_flows(surveys_path(config_dir, surveys_dir), KindRegistry.from_config(config_dir))
        for name, (flow, _) in voice.items():
            if name in bound:
                raise FlowError(f"{flow.path or name}: name: flow {name!r} is also defined in config/flows")
        bound.update(voice)
        return cls({name: flow for name, (flow, _) in bound.items()},
                   {name: reader for name, (_, reader) in bound.items()}, surveys)
