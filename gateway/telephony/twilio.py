"""Twilio Media Streams, bidirectional (`<Connect><Stream>`), sans I/O.

Twilio -> gateway (text frames only):
  {"event": "connected", "protocol": "Call", "version": "1.0.0"}
  {"event": "start", "sequenceNumber": "1", "streamSid": "MZ...",
   "start": {"accountSid": "AC...", "streamSid": "MZ...", "callSid": "CA...",
             "tracks": ["inbound"], "customParameters": {...},
             "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
  {"event": "media", "sequenceNumber": "2", "streamSid": "MZ...",
   "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": "<base64 mu-law>"}}
  {"event": "dtmf", "streamSid": "MZ...", "sequenceNumber": "5",
   "dtmf": {"track": "inbound_track", "digit": "1"}}
  {"event": "mark", "streamSid": "MZ...", "sequenceNumber": "4", "mark": {"name": "..."}}
  {"event": "stop", "streamSid": "MZ...", "sequenceNumber": "6",
   "stop": {"accountSid": "AC...", "callSid": "CA..."}}

Gateway -> Twilio:
  {"event": "media", "streamSid": "MZ...", "media": {"payload": "<base64 mu-law 8 kHz>"}}
  {"event": "mark", "streamSid": "MZ...", "mark": {"name": "..."}}   echoed back when played
  {"event": "clear", "streamSid": "MZ..."}                             drop buffered audio

Unknown events are ignored (Twilio adds events over time); broken JSON is not.
Transcripts and transfers have no stream message: transfer goes through the REST API.
"""

from __future__ import annotations

from typing import Any

from gateway.telephony.base import (
    AudioIn,
    CallStart,
    CallStop,
    DtmfIn,
    Frame,
    InboundEvent,
    MarkIn,
)
from gateway.telephony.json_frames import (
    POLICY_VIOLATION,
    UNSUPPORTED_DATA,
    FrameError,
    decode_base64,
    dumps,
    encode_base64,
    fail,
    first_scalar,
    get_object,
    get_str,
    optional_str,
    parse_object,
    string_params,
)
from speech.codecs import Encoding
from speech.results import Transcript

TWILIO_ENCODING = "audio/x-mulaw"
TWILIO_SAMPLE_RATE = 8000
_DTMF_DIGITS = frozenset("0123456789*#ABCD")
_CALLER_KEYS = ("caller", "from", "From")


class TwilioAdapter:
    name = "twilio"
    plays_audio = True  # whether play() reaches the caller

    def __init__(self, play_chunk_ms: int = 1000) -> None:
        # Outbound audio is cut into frames of this length: Twilio queues them
        # anyway, and small frames keep each WebSocket message modest.
        self.play_chunk_bytes = max(1, TWILIO_SAMPLE_RATE * play_chunk_ms // 1000)
        self.stream_sid: str | None = None
        self.call_sid: str | None = None
        self.account_sid: str | None = None
        self._stopped = False

    @property
    def started(self) -> bool:
        return self.stream_sid is not None

    @property
    def stopped(self) -> bool:
        return self._stopped

    # --- inbound -------------------------------------------------------------
    def receive_text(self, text: str) -> list[InboundEvent]:
        try:
            return self._receive(parse_object(text, "twilio"))
        except FrameError as exc:
            return [exc.event()]

    def receive_bytes(self, data: bytes) -> list[InboundEvent]:
        return [
            FrameError(
                "twilio: binary frame received; Media Streams sends JSON text frames only",
                UNSUPPORTED_DATA,
            ).event()
        ]

    def _receive(self, msg: dict[str, Any]) -> list[InboundEvent]:
        event = get_str(msg, "event", "twilio message")
        if self._stopped:
            fail(f"twilio: {event!r} after stop", POLICY_VIOLATION)
        if event == "connected":
            return []  # describes the protocol only; nothing to check
        if event == "start":
            return [self._start(msg)]
        if event not in ("media", "dtmf", "mark", "stop"):
            return []  # Twilio may add events; none of them matter to the call
        if not self.started:
            fail(f"twilio: {event!r} before 'start'", POLICY_VIOLATION)
        sid = msg.get("streamSid")
        if sid is not None and sid != self.stream_sid:
            fail(f"twilio: {event!r} for stream {sid!r}, this socket carries {self.stream_sid!r}", POLICY_VIOLATION)
        if event == "media":
            media = get_object(msg, "media", "twilio media")
            # With track="both_tracks" Twilio also sends what the callee hears (our own audio).
            if media.get("track", "inbound") != "inbound":
                return []
            return [AudioIn(payload=decode_base64(media.get("payload"), "twilio media"))]
        if event == "dtmf":
            digit = get_str(get_object(msg, "dtmf", "twilio dtmf"), "digit", "twilio dtmf")
            if len(digit) != 1 or digit not in _DTMF_DIGITS:
                fail(f"twilio dtmf: invalid digit {digit!r}")
            return [DtmfIn(digits=digit)]
        if event == "mark":
            name = get_str(get_object(msg, "mark", "twilio mark"), "name", "twilio mark")
            return [MarkIn(name=name)]
        self._stopped = True
        return [CallStop(reason="hangup")]

    def _start(self, msg: dict[str, Any]) -> CallStart:
        if self.started:
            fail("twilio: duplicate 'start'", POLICY_VIOLATION)
        start = get_object(msg, "start", "twilio start")
        # streamSid sits both inside "start" and at the top level; either will do.
        stream_sid = optional_str(start, "streamSid", "twilio start") or get_str(msg, "streamSid", "twilio start")
        call_sid = get_str(start, "callSid", "twilio start")
        fmt = get_object(start, "mediaFormat", "twilio start", required=False)
        encoding = fmt.get("encoding", TWILIO_ENCODING)
        rate = fmt.get("sampleRate", TWILIO_SAMPLE_RATE)
        channels = fmt.get("channels", 1)
        if encoding != TWILIO_ENCODING:
            fail(f"twilio start: unsupported encoding {encoding!r}, expected {TWILIO_ENCODING!r}", UNSUPPORTED_DATA)
        if rate != TWILIO_SAMPLE_RATE or isinstance(rate, bool):
            fail(f"twilio start: unsupported sample rate {rate!r}, expected 8000", UNSUPPORTED_DATA)
        if channels != 1 or isinstance(channels, bool):
            fail(f"twilio start: unsupported channel count {channels!r}, expected 1", UNSUPPORTED_DATA)
        params = string_params(get_object(start, "customParameters", "twilio start", required=False))
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.account_sid = optional_str(start, "accountSid", "twilio start")
        return CallStart(
            call_id=call_sid,
            encoding=Encoding.MULAW,
            sample_rate=TWILIO_SAMPLE_RATE,
            caller_number=first_scalar(params, _CALLER_KEYS),
            stream_id=stream_sid,
            token=params.get("token"),
            params=params,
        )

    # --- outbound --------------------------------------------------------------
    def results(self, finals: list[Transcript], partial: Transcript | None) -> list[Frame]:
        return []  # Media Streams has no transcript message

    def play(self, pcm16: bytes, sample_rate: int, mark: str | None = None) -> list[Frame]:
        if self.stream_sid is None or self._stopped:
            return []  # no stream to address the audio to
        ulaw = _to_ulaw_8k(pcm16, sample_rate)
        frames: list[Frame] = []
        for i in range(0, len(ulaw), self.play_chunk_bytes):
            chunk = ulaw[i : i + self.play_chunk_bytes]
            frames.append(
                dumps({"event": "media", "streamSid": self.stream_sid, "media": {"payload": encode_base64(chunk)}})
            )
        if mark is not None:
            frames.append(dumps({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": mark}}))
        return frames

    def clear(self) -> list[Frame]:
        if self.stream_sid is None or self._stopped:
            return []
        return [dumps({"event": "clear", "streamSid": self.stream_sid})]

    def transfer(self, reason: str, target: str | None = None) -> list[Frame]:
        return []  # done by updating the call through Twilio's REST API

    def error(self, message: str) -> list[Frame]:
        return []  # Twilio has no inbound error message; it logs the close

    def bot_event(self, event: dict[str, Any]) -> list[Frame]:
        return []  # prompts reach Twilio callers as audio (play), reports through the API


def _to_ulaw_8k(pcm16: bytes, sample_rate: int) -> bytes:
    # Imported here: speech.codecs/resample are shared with the recognizer path
    # and only the playback path needs the encoder.
    from speech.codecs import ulaw_encode
    from speech.resample import StreamResampler

    pcm16 = pcm16[: len(pcm16) - len(pcm16) % 2]  # a stray odd byte is not a sample
    if sample_rate != TWILIO_SAMPLE_RATE:
        resampler = StreamResampler(sample_rate, TWILIO_SAMPLE_RATE)
        pcm16 = resampler.process(pcm16) + resampler.flush()
    return ulaw_encode(pcm16)
