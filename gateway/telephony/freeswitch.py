"""FreeSWITCH mod_audio_fork (drachtio) and mod_audio_stream (amigniter), sans I/O.

The two modules stream the same audio but take different playback commands, so
each call speaks its module's dialect. Which module a call comes from, first
match wins:
  1. the URL: `?module=audio_fork|audio_stream`;
  2. the metadata: a `module` field with one of those values;
  3. the handshake: mod_audio_fork always asks for a WebSocket subprotocol
     (`audio.drachtio.org` unless MOD_AUDIO_FORK_SUBPROTOCOL_NAME renames it),
     mod_audio_stream asks for none.
`FreeswitchAdapter.for_connection` applies 1 and 3; the constructor takes the module as given.

FreeSWITCH -> gateway:
  text   metadata, once, before the audio: the text given on the command line
         (`uuid_audio_fork <uuid> start <url> <mix> <rate> <metadata>`,
         `uuid_audio_stream <uuid> start <url> mono 16k <metadata>`). Optional for
         mod_audio_stream, so binary may come first. A JSON object; keys read:
           call id     callId | call_id | callid | uuid
           caller      caller | from | caller_id_number
           token       token
           rate        sampleRate | sample_rate   (overrides the constructor's)
           channels    channels                   (only 1 is supported)
           module      module                     (audio_fork | audio_stream)
         mod_audio_stream documents its metadata as any UTF-8 text: other text is
         ignored there (`Ignored`); mod_audio_fork's must be the JSON object.
         Later text frames (`send_text`, `stop <metadata>`) are informational: JSON
         objects are dropped, any other text is reported as `Ignored`.
  binary L16: 16-bit LE PCM, mono, at the sample rate above (8 or 16 kHz usually).
         Neither module says its rate on the wire: when neither the URL nor the
         metadata does, 8 kHz is assumed and CallStart.rate_assumed says so.

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
      module="audio_fork" only: mod_audio_stream's socket protocol has no command that
      stops playback (only the `uuid_audio_stream` API does), so clear() sends nothing there
  {"type": "transfer", "data": {"reason": "...", "target": "..."}}
  {"type": "error", "data": {"message": "..."}}
  {"type": "json", "data": {"event": "prompt" | "report" | "hangup", ...}}   dialogue events
Neither module has playback marks, so `play(mark=...)` sends no mark.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence, cast

from gateway.privacy import mask_text
from gateway.telephony.base import AudioIn, CallStart, Frame, Ignored, InboundEvent
from gateway.telephony.json_frames import (
    POLICY_VIOLATION,
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
MODULES: tuple[Module, ...] = ("audio_fork", "audio_stream")
ASSUMED_RATE = 8000  # what FreeSWITCH streams unless told otherwise (narrowband calls)

# Raw rates both modules map to a FreeSWITCH file type (.r8 ... .r48); others get resampled.
_PLAYABLE_RATES = frozenset({8000, 16000, 24000, 32000, 48000})
_CALL_ID_KEYS = ("callId", "call_id", "callid", "uuid")
_CALLER_KEYS = ("caller", "from", "caller_id_number")
_RATE_KEYS = ("sampleRate", "sample_rate")


class FreeswitchAdapter:
    name = "freeswitch"
    plays_audio = True  # whether play() reaches the caller

    def __init__(self, call_id: str, sample_rate: int | str | None = None, module: Module = "audio_fork",
                 *, module_told: bool = True) -> None:
        """`sample_rate`: from the URL (None: not stated); `module_told`: False when `module`
        is only a guess, which a `module` field in the metadata may correct."""
        if module not in MODULES:
            raise ValueError(f"unknown FreeSWITCH module {module!r}")
        self.call_id = call_id
        self.module: Module = module
        self._module_told = module_told
        self._config_error: str | None = None  # a bad ?module= from the peer, refused on its first frame
        # Validated when the call starts: it comes from the URL query, i.e. from the peer.
        self._default_rate = sample_rate
        self.sample_rate: int | None = None
        self.metadata: dict[str, Any] = {}
        self._started = False
        self._last_partial = ""

    @classmethod
    def for_connection(cls, call_id: str, query: Mapping[str, str], subprotocols: Sequence[str]) -> FreeswitchAdapter:
        """The adapter for one accepted WebSocket: the module from `?module=`, else guessed from
        the subprotocols the client asked for; `?sample_rate=` if given."""
        told = query.get("module")
        if told is None:
            # mod_audio_fork always asks for a subprotocol; mod_audio_stream never does.
            adapter = cls(call_id, query.get("sample_rate"), "audio_fork" if subprotocols else "audio_stream",
                          module_told=False)
        elif told in MODULES:
            adapter = cls(call_id, query.get("sample_rate"), cast(Module, told))
        else:
            adapter = cls(call_id, query.get("sample_rate"))
            adapter._config_error = _unknown_module(told)
        return adapter

    @property
    def started(self) -> bool:
        return self._started

    # --- inbound -------------------------------------------------------------
    def receive_text(self, text: str) -> list[InboundEvent]:
        try:
            self._check_config()
            try:
                msg = parse_object(text, "freeswitch")
            except FrameError as exc:
                # Both modules pass on whatever `send_text` (and mod_audio_stream's metadata) carries.
                if self._started or self.module == "audio_stream":
                    return [_ignored(text, exc.message)]
                raise  # mod_audio_fork's metadata is the call's configuration: broken is broken
            if self._started:
                return []  # send_text / stop metadata: informational only
            return [self._start(msg)]
        except FrameError as exc:
            return [exc.event()]

    def receive_bytes(self, data: bytes) -> list[InboundEvent]:
        try:
            self._check_config()
            check_pcm16(data, "freeswitch")
            # mod_audio_stream without metadata: the audio itself opens the call.
            events: list[InboundEvent] = [] if self._started else [self._start({})]
        except FrameError as exc:
            return [exc.event()]
        events.append(AudioIn(payload=bytes(data)))
        return events

    def _check_config(self) -> None:
        if self._config_error is not None:
            fail(self._config_error, POLICY_VIOLATION)

    def _start(self, metadata: dict[str, Any]) -> CallStart:
        if "module" in metadata:
            told = metadata["module"]
            if told not in MODULES:
                fail(_unknown_module(told), POLICY_VIOLATION)
            if not self._module_told:
                self.module = cast(Module, told)
        rate_value: Any = self._default_rate
        for key in _RATE_KEYS:
            if metadata.get(key) is not None:
                rate_value = metadata[key]
                break
        assumed = rate_value is None
        rate = ASSUMED_RATE if assumed else parse_sample_rate(rate_value, "freeswitch")
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
            rate_assumed=assumed,
            real_time=True,  # a media bug on a live channel: audio comes as it is spoken
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
        if self.module == "audio_stream":
            return []  # its socket protocol cannot stop playback (module docstring)
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


def _unknown_module(value: Any) -> str:
    return f"freeswitch: unknown module {str(value)[:40]!r} (expected audio_fork or audio_stream)"


def _ignored(text: str, why: str) -> Ignored:
    # Stray text may carry a caller's number: mask it, and keep the log line short.
    shown = mask_text(text[:80]) + ("..." if len(text) > 80 else "")
    return Ignored(f"{why.split(' (')[0]}: {shown!r}")


def _resample(pcm16: bytes, in_rate: int, out_rate: int) -> bytes:
    from speech.resample import StreamResampler  # only playback needs it

    resampler = StreamResampler(in_rate, out_rate)
    return resampler.process(pcm16) + resampler.flush()
