"""Recognition results, independent of the recognizer that made them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds since the call started
    end: float
    conf: float


@dataclass(frozen=True)
class Alternative:
    text: str
    confidence: float
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    """A partial (still changing) or final recognition of one utterance.

    `text` is the recognizer's text: words separated by spaces, no punctuation.
    """

    text: str
    final: bool
    words: tuple[Word, ...] = ()
    confidence: float | None = None
    start: float | None = None  # seconds since the call started
    end: float | None = None
    alternatives: tuple[Alternative, ...] = ()

    @property
    def compact_text(self) -> str:
        """The text without the spaces the recognizer puts between Chinese words."""
        return self.text.replace(" ", "")
