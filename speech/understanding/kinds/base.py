"""What a slot kind is: how one kind of answer is read, normalized, validated, read back and heard.

A kind is built once per slot from the slot's `options` (flow YAML) and the dictionaries;
`read` is called per utterance, so kinds hold no per-call state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import yaml

from ..acts import DialogueActs


class KindError(ValueError):
    """A kind name or option is wrong; the message says which (the caller adds file and key)."""


@dataclass(frozen=True)
class Reading:
    """A value read for a slot (`value`, normalized), or a `problem` code for one that is invalid."""

    value: str | None
    confidence: float
    span: str
    problem: str | None = None


@dataclass(frozen=True)
class Heard:
    """One utterance as a kind sees it."""

    text: str  # compact: no spaces, punctuation reduced to '，' (claims.compact_text)
    now: datetime  # the call's start, in Asia/Shanghai (relative dates resolve against it)
    asked: bool  # the slot was just asked for: a bare answer ("五", "是的") counts
    recognized: bool  # the text is a speech recognizer's


class Kind(Protocol):
    name: str

    def read(self, heard: Heard) -> Reading | None:
        """The slot's value in the utterance; when not `asked`, only an unmistakable mention."""

    def normalize(self, raw: str) -> str | None:
        """A raw answer ("打五分吧", "幺三八…") → the stored form, or None if it is not one."""

    def validate(self, value: str, now: datetime) -> str | None:
        """A problem code for a normalized value that is not acceptable, else None."""

    def grammar(self) -> tuple[str, ...] | None:
        """Phrases the answer to this slot's question is said in (None: the full vocabulary)."""

    def say(self, value: str) -> str:
        """The value as the bot reads it back."""


class Dictionaries:
    """The dictionary folder, each file loaded once on first use (several kinds share them)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._cache: dict[str, Any] = {}

    def path(self, name: str) -> Path:
        return self.folder / name

    def yaml(self, name: str) -> Any:
        if name not in self._cache:
            self._cache[name] = yaml.safe_load(self.path(name).read_text(encoding="utf-8")) or {}
        return self._cache[name]

    def lines(self, name: str) -> list[str]:
        key = f"lines:{name}"
        if key not in self._cache:
            text = self.path(name).read_text(encoding="utf-8")
            self._cache[key] = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        return self._cache[key]

    def shared(self, key: str, make: Callable[[], Any]) -> Any:
        """An object built once from the dictionaries (the acts reader, the claim reader)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def acts(self) -> DialogueActs:
        return self.shared("acts", lambda: DialogueActs(self.yaml("dialogue_acts.yaml")))


class Options:
    """A slot's `options` mapping, read by its kind; unknown options are refused."""

    def __init__(self, raw: Mapping[str, Any], allowed: set[str]) -> None:
        unknown = sorted(set(raw) - allowed)
        if unknown:
            known = ", ".join(sorted(allowed)) or "none"
            raise KindError(f"options.{unknown[0]}: unknown option (known: {known})")
        self.raw = raw

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise KindError(f"options.{key}: expected an integer >= {minimum}, got {value!r}")
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)


def readback_of(value: str) -> str:
    return value
