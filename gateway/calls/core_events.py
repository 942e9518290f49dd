"""Events into the call core and the actions it answers with (plain frozen data).

The shell hands `CallCore.handle` an event and carries out the actions it gets
back, in order. The adapter's own events go in unchanged where the core needs
them (`TextIn`, `DtmfIn`, `MarkIn`, `CallStop`, `ProtocolError` of
gateway.telephony.base); audio does not: the shell decodes it and hands in what
recognition made of it (`Recognized`).

Three actions are requests (`Request`): the shell must do them and hand the
answer back as the next event — `OpenAudio` → `AudioOpened`, `Speak` →
`PromptPlayed`, `FlushAudio` → `Flushed`. A request is always the last action of
what `handle` returns; what follows it comes back with the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Sequence, Union

from speech.codecs import Encoding
from speech.results import Transcript
from speech.stream import RecognitionOutcome
from speech.vad import VadConfig

from gateway.telephony.base import CallStart, CallStop, DtmfIn, Frame, MarkIn, ProtocolError, TextIn


# --- shell -> core -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallStarted:
    """The adapter's CallStart, with whether its caller may use the gateway, the time, and the records."""

    start: CallStart
    authorized: bool
    now: float  # monotonic seconds
    wall: datetime  # the same instant on the (zoned) wall clock: report and transcript times
    records: Any = None  # the policy records as they are now (speech.dialogue.records.RecordIndex)
    # Values the gateway itself gives the call's flow (a survey's expected identity answer, its
    # wording for this policy): over the peer's params, never published nor sent to the peer.
    server_params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Recognized:
    """One inbound message was handled: what recognizing its audio produced (`outcome`,
    None when no batch was decoded). One per message, after its other events: the
    caller's turn is taken here, and the message gets the adapter's reply."""

    outcome: RecognitionOutcome | None
    partial: Transcript | None  # the hypothesis in progress, after this message's decoding
    position: float  # call audio received so far (s): the call's own clock
    audio_in: bool  # the message carried call audio
    now: float


@dataclass(frozen=True, slots=True)
class Tick:
    """The wait `CallCore.timeout` allowed passed with no message from the peer."""

    now: float


@dataclass(frozen=True, slots=True)
class AudioOpened:
    """Answer to OpenAudio: `error` says why the format is not supported."""

    error: str | None = None


@dataclass(frozen=True, slots=True)
class PromptPlayed:
    """Answer to Speak: how long the prompt plays (0 when it was not played)."""

    seconds: float
    now: float


@dataclass(frozen=True, slots=True)
class Flushed:
    """Answer to FlushAudio: what the rest of the call's audio decoded to."""

    outcome: RecognitionOutcome


@dataclass(frozen=True, slots=True)
class Finished:
    """The connection is over (whatever ended it): the rest of the audio, decoded."""

    outcome: RecognitionOutcome
    position: float
    now: float


@dataclass(frozen=True, slots=True)
class Failed:
    """The shell hit an unexpected error; the call closes with 1011."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The gateway stops (its drain's deadline passed): the call ends now, closed with 1001."""

    reason: str = "shutdown"


Event = Union[
    CallStarted, Recognized, Tick, AudioOpened, PromptPlayed, Flushed, Finished, Failed, Shutdown,
    TextIn, DtmfIn, MarkIn, CallStop, ProtocolError,
]


# --- core -> shell -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    frames: Sequence[Frame]  # from the adapter, sent in order


@dataclass(frozen=True, slots=True)
class ClearPlayback:
    """The caller barged in on a prompt: these frames stop the platform's playback."""

    frames: Sequence[Frame]


@dataclass(frozen=True, slots=True)
class Publish:
    event: dict[str, Any]  # to the registry's subscribers (events WebSocket, webhook)


@dataclass(frozen=True, slots=True)
class StartCallRow:
    call_id: str
    protocol: str
    caller_number: str | None


@dataclass(frozen=True, slots=True)
class StoreSegment:
    number: int  # 1-based, in the call
    text: str
    start: float | None
    end: float | None
    confidence: float | None


@dataclass(frozen=True, slots=True)
class SaveReport:
    """The flow's report as it stands (saved after every caller turn; final statuses queue delivery)."""

    report_id: str
    call_id: str
    flow: str
    status: str
    caller_number: str | None
    slots: dict[str, str]
    details: dict[str, Any]
    transcript: list[dict[str, Any]]
    policy_number: str | None
    topic: str  # the delivery topic of the flow's results
    final_statuses: frozenset[str]  # the flow's outcomes: a report in one of them is delivered
    # The parameters the call came with (an outbound call's delivery_id, …), less its API key:
    # what result listeners need to tell whom a result answers.
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EndCallRow:
    reason: str
    audio_seconds: float


@dataclass(frozen=True, slots=True)
class SetGrammar:
    """The next answer is recognized with these phrases (None: free speech), with that many n-best
    alternatives (0: none; only with phrases)."""

    phrases: tuple[str, ...] | None
    alternatives: int = 0


@dataclass(frozen=True, slots=True)
class Close:
    """Stop reading and close the connection. `linger`: first give the peer up to 2 s to
    close by itself (the bot hung up or transferred; it may still be answering)."""

    code: int
    reason: str
    linger: bool = False


class Request:
    """An action whose result the core needs: answered by the next event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class OpenAudio(Request):
    """Set up audio input and a recognizer for this format (answer: AudioOpened)."""

    encoding: Encoding
    sample_rate: int
    vad: VadConfig
    phrases: tuple[str, ...] | None
    words: bool
    max_alternatives: int


@dataclass(frozen=True, slots=True)
class Speak(Request):
    """Say this prompt where the platform plays audio (answer: PromptPlayed)."""

    text: str


@dataclass(frozen=True, slots=True)
class FlushAudio(Request):
    """Decode whatever audio is left now (answer: Flushed)."""


Action = Union[
    Send, ClearPlayback, Publish, StartCallRow, StoreSegment, SaveReport, EndCallRow, SetGrammar, Close,
    OpenAudio, Speak, FlushAudio,
]

NOTHING: tuple[()] = ()  # what most events produce; shared, so the per-frame path allocates nothing
