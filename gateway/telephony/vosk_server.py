"""alphacep vosk-server WebSocket protocol (websocket/asr_server.py), sans I/O.

Client -> gateway:
  text   {"config": {"sample_rate": 8000, "phrase_list": [...], "words": true,
                     "max_alternatives": 0}}           optional, any time, no reply
  binary 16-bit LE PCM mono at the configured sample rate  -> one reply
  text   {"reset": 1}   finish the current utterance, go on -> one reply
  text   {"eof": 1}     end of stream                       -> one reply, then close

Gateway -> client, exactly one text frame per audio/reset/eof message, in order:
  {"result": [{"conf", "end", "start", "word"}, ...], "text": "..."}   an utterance ended
  {"alternatives": [{"confidence", "result": [...], "text"}, ...]}       same, max_alternatives > 0
  {"partial": "...", "partial_result": [...]}                            otherwise
After reset/eof the reply is always a final result, `{"text": ""}` when nothing was said.

The shell calls `results()` after every inbound message; the adapter queues the
messages that are owed a reply, so a call after `config` returns [] and finals
reported then are held for the next reply instead of being lost.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

from gateway.telephony.base import (
    AudioIn,
    CallStart,
    CallStop,
    ConfigUpdate,
    FlushRequest,
    Frame,
    InboundEvent,
)
from gateway.telephony.json_frames import (
    POLICY_VIOLATION,
    UNSUPPORTED_DATA,
    FrameError,
    check_pcm16,
    dumps,
    fail,
    parse_object,
    parse_sample_rate,
    round_conf,
    word_dicts,
)
from speech.codecs import Encoding
from speech.results import Alternative, Transcript

_Reply = Literal["audio", "reset", "eof"]
_WHERE = "vosk"


class VoskServerAdapter:
    name = "vosk"
    plays_audio = False  # whether play() reaches the caller

    def __init__(self, call_id: str, default_sample_rate: int = 16000) -> None:
        self.call_id = call_id
        self.sample_rate = default_sample_rate
        self.phrases: tuple[str, ...] | None = None
        self.words = True  # vosk-server's VOSK_SHOW_WORDS default
        self.max_alternatives = 0
        self._started = False
        self._ended = False  # eof received
        self._finished = False  # eof reply produced
        self._owed: deque[_Reply] = deque()  # messages still owed a reply, in order
        self._held: list[Transcript] = []  # finals reported while no reply was owed

    # --- state the shell reads ---------------------------------------------
    @property
    def started(self) -> bool:
        return self._started

    @property
    def ended(self) -> bool:
        """eof was received: accept no more input, send the owed replies, then close."""
        return self._ended

    @property
    def finished(self) -> bool:
        """The final reply to eof was produced; the shell may close normally (1000)."""
        return self._finished

    @property
    def replies_owed(self) -> int:
        return len(self._owed)

    # --- inbound -------------------------------------------------------------
    def receive_text(self, text: str) -> list[InboundEvent]:
        try:
            return self._receive_text(text)
        except FrameError as exc:
            return [exc.event()]

    def receive_bytes(self, data: bytes) -> list[InboundEvent]:
        try:
            self._check_open()
            check_pcm16(data, _WHERE)
        except FrameError as exc:
            return [exc.event()]
        events: list[InboundEvent] = self._start_if_needed()
        events.append(AudioIn(payload=bytes(data)))
        self._owed.append("audio")
        return events

    def _receive_text(self, text: str) -> list[InboundEvent]:
        self._check_open()
        msg = parse_object(text, _WHERE)
        if "config" in msg:
            return self._config(msg["config"])
        if "eof" in msg:
            self._check_flag(msg, "eof")
            events = self._start_if_needed()
            self._ended = True
            self._owed.append("eof")
            events.append(CallStop(reason="eof"))
            return events
        if "reset" in msg:
            self._check_flag(msg, "reset")
            events = self._start_if_needed()
            self._owed.append("reset")
            events.append(FlushRequest())
            return events
        keys = ", ".join(repr(k)[:40] for k in sorted(msg)[:5]) or "none"  # bounded: it ends up in logs
        fail(f"vosk: unknown message (keys: {keys}); expected config, eof or reset", UNSUPPORTED_DATA)

    def _check_open(self) -> None:
        if self._ended:
            fail("vosk: message after eof", POLICY_VIOLATION)

    @staticmethod
    def _check_flag(msg: dict[str, Any], key: str) -> None:
        # vosk clients send 1; accept true as well, reject anything that reads as "don't".
        if msg[key] not in (1, True):
            fail(f"vosk: {key!r} must be 1")

    def _config(self, cfg: Any) -> list[InboundEvent]:
        if not isinstance(cfg, dict):
            fail("vosk: 'config' must be a JSON object")
        update: dict[str, Any] = {}
        if "sample_rate" in cfg:
            update["sample_rate"] = parse_sample_rate(cfg["sample_rate"], "vosk config")
        if "phrase_list" in cfg:
            phrases = cfg["phrase_list"]
            if phrases is None:
                phrases = []
            if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
                fail("vosk config: 'phrase_list' must be a list of strings")
            # () means "no phrase list" (vosk-server ignores an empty list as well).
            update["phrases"] = tuple(phrases)
        if "words" in cfg:
            words = cfg["words"]
            if not isinstance(words, int) or words not in (0, 1):  # bool is an int
                fail("vosk config: 'words' must be true/false or 1/0")
            update["words"] = bool(words)
        if "max_alternatives" in cfg:
            alts = cfg["max_alternatives"]
            if isinstance(alts, bool) or not isinstance(alts, int) or not 0 <= alts <= 100:
                fail("vosk config: 'max_alternatives' must be an integer 0..100")
            update["max_alternatives"] = alts
        # Unknown config keys are ignored, as vosk-server does.
        self.sample_rate = update.get("sample_rate", self.sample_rate)
        if "phrases" in update:
            self.phrases = update["phrases"] or None
        self.words = update.get("words", self.words)
        self.max_alternatives = update.get("max_alternatives", self.max_alternatives)
        if not self._started or not update:
            return []
        return [ConfigUpdate(**update)]

    def _start_if_needed(self) -> list[InboundEvent]:
        # CallStart waits for the first audio/eof/reset so that every config
        # sent before the audio is folded into it.
        if self._started:
            return []
        self._started = True
        return [
            CallStart(
                call_id=self.call_id,
                encoding=Encoding.PCM16,
                sample_rate=self.sample_rate,
                phrases=self.phrases,
                words=self.words,
                max_alternatives=self.max_alternatives,
            )
        ]

    # --- outbound --------------------------------------------------------------
    def results(self, finals: list[Transcript], partial: Transcript | None) -> list[Frame]:
        self._held.extend(finals)
        if not self._owed:
            return []
        kind = self._owed.popleft()
        held, self._held = self._held, []
        if kind == "eof":  # always the last owed reply: nothing is accepted after eof
            self._finished = True
        if held or kind != "audio":
            return [dumps(self._final(held))]
        return [dumps(self._partial(partial))]

    def _final(self, finals: list[Transcript]) -> dict[str, Any]:
        if self.max_alternatives > 0:
            return {"alternatives": self._alternatives(finals)}
        words = [w for f in finals for w in f.words]
        text = _join(f.text for f in finals)
        out: dict[str, Any] = {}
        if self.words and words:
            out["result"] = word_dicts(words)
        out["text"] = text
        return out

    def _alternatives(self, finals: list[Transcript]) -> list[dict[str, Any]]:
        if not finals:
            return [{"confidence": 0.0, "text": ""}]
        if len(finals) == 1:
            alts = list(finals[0].alternatives) or [_best(finals[0])]
        else:
            # N-best lists of separate utterances don't combine; join the best of each.
            best = [f.alternatives[0] if f.alternatives else _best(f) for f in finals]
            alts = [
                Alternative(
                    text=_join(a.text for a in best),
                    confidence=sum(a.confidence for a in best) / len(best),
                    words=tuple(w for a in best for w in a.words),
                )
            ]
        out: list[dict[str, Any]] = []
        for alt in alts[: self.max_alternatives]:
            item: dict[str, Any] = {"confidence": round_conf(alt.confidence)}
            if self.words and alt.words:
                item["result"] = word_dicts(alt.words, with_conf=False)
            item["text"] = alt.text
            out.append(item)
        return out

    def _partial(self, partial: Transcript | None) -> dict[str, Any]:
        if partial is None:
            return {"partial": ""}
        out: dict[str, Any] = {"partial": partial.text}
        if self.words and partial.words:
            out["partial_result"] = word_dicts(partial.words)
        return out

    def play(self, pcm16: bytes, sample_rate: int, mark: str | None = None) -> list[Frame]:
        return []  # vosk-server is recognition only

    def clear(self) -> list[Frame]:
        return []

    def transfer(self, reason: str, target: str | None = None) -> list[Frame]:
        return []

    def error(self, message: str) -> list[Frame]:
        # vosk-server has no error message; clients only see the close reason.
        return []

    def bot_event(self, event: dict[str, Any]) -> list[Frame]:
        return []  # a pure recognition protocol: one reply per message, nothing unsolicited


def _best(t: Transcript) -> Alternative:
    return Alternative(text=t.text, confidence=t.confidence if t.confidence is not None else 1.0, words=t.words)


def _join(texts: Any) -> str:
    return " ".join(t for t in texts if t)
