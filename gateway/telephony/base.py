"""Events between a protocol adapter and the call shell.

An adapter is a plain state machine: the shell hands it every WebSocket frame
it receives (`receive_text` / `receive_bytes`) and gets back `InboundEvent`s;
the shell hands it what the call produced (transcripts, audio to play, a
transfer) and gets back frames to send. No sockets, clocks or threads inside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Union

from speech.codecs import Encoding
from speech.results import Transcript

Frame = Union[str, bytes]  # a WebSocket text or binary frame to send


# --- adapter -> shell -------------------------------------------------------
@dataclass(frozen=True)
class CallStart:
    """The call's audio format and metadata are known; the shell may allocate a recognizer."""

    call_id: str
    encoding: Encoding
    sample_rate: int
    caller_number: str | None = None
    stream_id: str | None = None
    token: str | None = None  # API key carried inside the protocol (Twilio customParameters, ...)
    flow: str | None = None
    started_at: str | None = None  # ISO 8601
    params: dict[str, str] = field(default_factory=dict)
    phrases: tuple[str, ...] | None = None  # recognizer phrase list / grammar
    words: bool = True
    max_alternatives: int = 0
    # Nothing the peer sent stated the sample rate: it is the adapter's default (logged and counted).
    rate_assumed: bool = False
    # The platform sends audio as it is spoken (a media bug on a live call): audio arriving much
    # faster than real time then means the sample rate is wrong.
    real_time: bool = False


@dataclass(frozen=True)
class AudioIn:
    payload: bytes  # encoded as CallStart.encoding at CallStart.sample_rate


@dataclass(frozen=True)
class ConfigUpdate:
    """Recognizer settings changed mid-call (vosk-server `config`)."""

    sample_rate: int | None = None
    phrases: tuple[str, ...] | None = None
    words: bool | None = None
    max_alternatives: int | None = None


@dataclass(frozen=True)
class TextIn:
    text: str


@dataclass(frozen=True)
class DtmfIn:
    digits: str


@dataclass(frozen=True)
class MarkIn:
    name: str  # the platform finished playing audio up to this mark


@dataclass(frozen=True)
class FlushRequest:
    """Finish the current utterance now (vosk-server `reset`)."""


@dataclass(frozen=True)
class CallStop:
    reason: str = "hangup"


@dataclass(frozen=True)
class Ignored:
    """A message outside the protocol that harms nothing (stray text): logged and counted, the call goes on."""

    message: str  # what was ignored and why; masked and short enough for a log line


@dataclass(frozen=True)
class ProtocolError:
    """The peer broke the protocol; the shell sends `frames` (if any) and closes with `close_code`."""

    message: str
    close_code: int = 1003


InboundEvent = Union[
    CallStart, AudioIn, ConfigUpdate, TextIn, DtmfIn, MarkIn, FlushRequest, CallStop, Ignored, ProtocolError
]


class Adapter(Protocol):
    """What the call shell needs from a telephony protocol."""

    name: str  # "twilio", "freeswitch", "vosk", "call"
    plays_audio: bool  # play() reaches the caller: prompts are worth synthesizing

    def receive_text(self, text: str) -> list[InboundEvent]: ...

    def receive_bytes(self, data: bytes) -> list[InboundEvent]: ...

    def results(self, finals: list[Transcript], partial: Transcript | None) -> list[Frame]:
        """Frames to send after one inbound message was processed.

        `finals` are the utterances that ended while processing it, `partial`
        the current partial hypothesis (None when nothing is in progress).
        """
        ...

    def play(self, pcm16: bytes, sample_rate: int, mark: str | None = None) -> list[Frame]:
        """Frames that make the platform play this audio ([] when it cannot)."""
        ...

    def clear(self) -> list[Frame]:
        """Frames that stop playback now (barge-in)."""
        ...

    def transfer(self, reason: str, target: str | None = None) -> list[Frame]: ...

    def error(self, message: str) -> list[Frame]:
        """Frames telling the peer what went wrong before the shell closes."""
        ...

    def bot_event(self, event: dict[str, Any]) -> list[Frame]:
        """Frames carrying a dialogue event (`prompt`, `report`, `hangup`; shapes of the
        generic protocol) to platforms that can take it ([] when they cannot)."""
        ...
