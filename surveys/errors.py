"""The one error of the surveys package's files: `SurveyError` names the file and the path in it."""

from __future__ import annotations


class SurveyError(ValueError):
    """A survey definition or product file that cannot be used: "<file>: <json path>: <problem>"."""

    def __init__(self, source: str, path: str, problem: str) -> None:
        super().__init__(f"{source}: {path}: {problem}")
        self.source = source
        self.path = path
        self.problem = problem
