"""FreeSWITCH mod_audio_fork (drachtio) and mod_audio_stream (amigniter), sans I/O.

FreeSWITCH -> gateway:
  text   metadata, once, before the audio: the JSON given on the command line
         (`uuid_audio_fork <uuid> start <url> <metadata>`,
         `uuid_audio_stream <uuid> start <url> mono 16k <metadata>`). Optional for
         mod_audio_stream, so binary may come first. Keys read:
           call id     callId | call_id | callid | uuid
           caller      caller | from | caller_id_number
           token       token
           rate        sampleRate | sample_rate   (overrides the constructor's)
           channels    channels                   (only 1 is supported)
         Later text frames (`send_text`, `stop <metadata>`) must be JSON objects and are ignored.
  binary L16: 16-bit LE PCM, mono, at the sample rate above (8 or 16 kHz usually).

Gateway -> FreeSWITCH (text frames; mod_audio_fork turns `transcription`, `transfer`,
`error` into `mod_audio_fork::*` events, mod_audio_stream forwards anything but
`streamAudio` as `mod_audio_stream::json`):
  {"type": "transcription", "data": {"text": "...", "final": true,
                                     "words": [{"conf", "end", "start", "word"}], "confidence": 0.93}}
      finals always; partials (final false) only when their text changed
  {"type": "playAudio",   "data": {"audioContentType": "raw", "sampleRate": 8000, "audioContent": "<base64 L16>"}}
      module="audio_fork"
  {"type": "streamAudio", "data": {"audioDataType": "raw", "sampleRate": 8000, "audioData": "<base64 L16>"}}
      module="audio_stream"
  {"type": "killAudio"}
  {"type": "transfer", "data": {"reason": "...", "target": "..."}}
  {"type": "error", "data": {"message": "..."}}
  {"type": "json", "data": {"event": "prompt" | "report" | "hangup", ...}}   dialogue events
Neither module has playback marks, so `play(mark=...)` sends no mark.
"""

from __future__ import annotations

from typing import Any, Literal

from gateway.telephony.base import AudioIn, CallStart, Frame, InboundEvent
from gateway.telephony.json_frames import (
    UNSUPPORTED_DATA,
    FrameError,
    check_pcm16,
    dumps,
    encode_base64,
    fail,
    first_scalar,
    parse_object,
    parse_sample_rate,
    round_conf,
    string_params,
    word_dicts,
)
from speech.codecs import Encoding
from speech.results import Transcript

Module = Literal["audio_fork", "audio_stream"]

# Raw rates both modules map to a FreeSWITCH file type (.r8 ... .r48); others get resampled.
_PLAYABLE_RATES = frozenset({8000, 16000, 24000, 32000, 48000})
_CALL_ID_KEYS = ("callId", "call_id", "callid", "uuid")
_CALLER_KEYS = ("caller", "from", "caller_id_number")
_RATE_KEYS = ("sampleRate", "sample_rate")


class FreeswitchAdapter:
    name = "freeswitch"
    plays_audio = True  # whether play() reaches the caller

    def __init__(self, call_id: str, sample_rate: int | str = 8000, module: Module = "audio_fork") -> None:
        if module not in ("audio_fork", "audio_stream"):
            raise ValueError(f"unknown FreeSWITCH module {module!r}")
        self.call_id = call_id
        self.module: Module = module
        # Validated when the call starts: it comes from the URL query, i.e. from the peer.
        self._default_rate = sample_rate
        self.sample_rate: int | None = None
        self.metadata: dict[str, Any] = {}
        self._started = False
        self._last_partial = ""

    @property
    def started(self) -> bool:
        return self._started

    # --- inbound -------------------------------------------------------------
    def receive_text(self, text: str) -> list[InboundEvent]:
        try:
            msg = parse_object(text, "freeswitch")
            if self._started:
                return []  # send_text / stop metadata: informational only
            return [self._start(msg)]
        except FrameError as exc:
            return [exc.event()]

    def receive_bytes(self, data: bytes) -> list[InboundEvent]:
        try:
            check_pcm16(data, "freeswitch")
            # mod_audio_stream without metadata: the audio itself opens the call.
            events: list[InboundEvent] = [] if self._started else [self._start({})]
        except FrameError as exc:
            return [exc.event()]
        events.append(AudioIn(payload=bytes(data)))
        return events

    def _start(self, metadata: dict[str, Any]) -> CallStart:
        rate_value: Any = self._default_rate
        for key in _RATE_KEYS:
            if metadata.get(key) is not None:
                rate_value = metadata[key]
                break
        rate = parse_sample_rate(rate_value, "freeswitch")
        channels = metadata.get("channels", 1)
        if channels not in (1, "1") or isinstance(channels, bool):
            fail(f"freeswitch: {channels!r} channels; only mono L16 is supported", UNSUPPORTED_DATA)
        token = metadata.get("token")
        self.metadata = metadata
        self.sample_rate = rate
        self._started = True
        return CallStart(
            call_id=first_scalar(metadata, _CALL_ID_KEYS) or self.call_id,
            encoding=Encoding.PCM16,
            sample_rate=rate,
            caller_number=first_scalar(metadata, _CALLER_KEYS),
            token=token if isinstance(token, str) else None,
            params=string_params(metadata),
        )

    # --- outbound --------------------------------------------------------------
    def results(self, finals: list[Transcript], partial: Transcript | None) -> list[Frame]:
        frames: list[Frame] = []
        for final in finals:
            data: dict[str, Any] = {"text": final.text, "final": True, "words": word_dicts(final.words)}
            if final.confidence is not None:
                data["confidence"] = round_conf(final.confidence)
            frames.append(dumps({"type": "transcription", "data": data}))
        if finals:
            self._last_partial = ""  # a new utterance starts; its first partial is news
        text = partial.text if partial is not None else ""
        if partial is not None and text != self._last_partial:
            data = {"text": text, "final": False}
            if partial.words:
                data["words"] = word_dicts(partial.words)
            frames.append(dumps({"type": "transcription", "data": data}))
        self._last_partial = text
        return frames

    def play(self, pcm16: bytes, sample_rate: int, mark: str | None = None) -> list[Frame]:
        pcm16 = pcm16[: len(pcm16) - len(pcm16) % 2]
        if not pcm16:
            return []
        if sample_rate not in _PLAYABLE_RATES:
            target = self.sample_rate or 8000
            pcm16 = _resample(pcm16, sample_rate, target)
            sample_rate = target
        audio = encode_base64(pcm16)
        if self.module == "audio_fork":
            msg = {
                "type": "playAudio",
                "data": {"audioContentType": "raw", "sampleRate": sample_rate, "audioContent": audio},
            }
        else:
            msg = {
                "type": "streamAudio",
                "data": {"audioDataType": "raw", "sampleRate": sample_rate, "audioData": audio},
            }
        return [dumps(msg)]

    def clear(self) -> list[Frame]:
        return [dumps({"type": "killAudio"})]

    def transfer(self, reason: str, target: str | None = None) -> list[Frame]:
        data: dict[str, Any] = {"reason": reason}
        if target is not None:
            data["target"] = target
        return [dumps({"type": "transfer", "data": data})]

    def error(self, message: str) -> list[Frame]:
        return [dumps({"type": "error", "data": {"message": message}})]

    def bot_event(self, event: dict[str, Any]) -> list[Frame]:
        # Both modules raise an unknown JSON type as an event the dialplan can act on.
        return [dumps({"type": "json", "data": event})]


def _resample(pcm16: bytes, in_rate: int, out_rate: int) -> bytes:
    from speech.resample import StreamResampler  # only playback needs it

    resampler = StreamResampler(in_rate, out_rate)
    return resampler.process(pcm16) + resampler.flush()
