"""The generic call protocol of CONTRACT.md (WebSocket `/ws/call`), sans I/O.

Client -> gateway: text JSON objects with an "event" field, binary audio frames.
  {"event": "start", "flow": "claim_report", "call_id": "...", "caller_number": "138...",
   "started_at": "2026-11-21T09:30:00+08:00", "sample_rate": 16000}   sample_rate/started_at optional
   optional "params": {"name": "text", ...}: the call's parameters (a flow's `params`, delivery_id)
  {"event": "text", "text": "..."}
  {"event": "dtmf", "digits": "123#"}
  {"event": "stop"}
  binary: 16-bit LE PCM mono at start.sample_rate (default 16000)

Gateway -> client:
  {"event": "transcript", "text": "...", "final": true, "words": [...], "confidence": 0.9}
  {"event": "transcript", "text": "...", "final": false}     only when the partial changed
  {"event": "prompt", "text": "...", "slot": "reporter_name", "slots": {...}}
  {"event": "report", "report_id": "...", "status": "complete", "slots": {...}}
  {"event": "transfer", "reason": "..."}
  {"event": "hangup", "reason": "..."}
  {"event": "error", "message": "..."}
Audio playback is not part of this protocol: the bot speaks through `prompt` text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from gateway.telephony.base import AudioIn, CallStart, CallStop, DtmfIn, Frame, InboundEvent, TextIn
from gateway.telephony.json_frames import (
    POLICY_VIOLATION,
    UNSUPPORTED_DATA,
    FrameError,
    check_pcm16,
    dumps,
    fail,
    first_scalar,
    get_object,
    get_str,
    optional_str,
    parse_object,
    parse_sample_rate,
    round_conf,
    string_params,
    word_dicts,
)
from speech.codecs import Encoding
from speech.results import Transcript

_DTMF_DIGITS = frozenset("0123456789*#ABCD")
_WHERE = "call"


class GenericCallAdapter:
    name = "call"
    plays_audio = False  # whether play() reaches the caller

    def __init__(self, default_sample_rate: int = 16000) -> None:
        self.default_sample_rate = default_sample_rate
        self.start: CallStart | None = None
        self._stopped = False
        self._last_partial = ""

    @property
    def started(self) -> bool:
        return self.start is not None

    @property
    def stopped(self) -> bool:
        return self._stopped

    # --- inbound -------------------------------------------------------------
    def receive_text(self, text: str) -> list[InboundEvent]:
        try:
            return self._receive(parse_object(text, _WHERE))
        except FrameError as exc:
            return [exc.event()]

    def receive_bytes(self, data: bytes) -> list[InboundEvent]:
        try:
            self._check_open("audio")
            check_pcm16(data, _WHERE)
        except FrameError as exc:
            return [exc.event()]
        return [AudioIn(payload=bytes(data))]

    def _check_open(self, what: str) -> None:
        if self._stopped:
            fail(f"call: {what} after 'stop'", POLICY_VIOLATION)
        if self.start is None:
            fail(f"call: {what} before 'start'", POLICY_VIOLATION)

    def _receive(self, msg: dict[str, Any]) -> list[InboundEvent]:
        event = get_str(msg, "event", "call message")
        if event == "start":
            if self._stopped or self.start is not None:
                fail("call: duplicate 'start'", POLICY_VIOLATION)
            self.start = self._parse_start(msg)
            return [self.start]
        if event not in ("text", "dtmf", "stop"):
            fail(f"call: unknown event {event!r}; expected start, text, dtmf or stop", UNSUPPORTED_DATA)
        self._check_open(repr(event))
        if event == "text":
            return [TextIn(text=get_str(msg, "text", "call text"))]
        if event == "dtmf":
            digits = get_str(msg, "digits", "call dtmf")
            if not digits or not set(digits) <= _DTMF_DIGITS:
                fail(f"call dtmf: invalid digits {digits!r}; allowed 0-9 * # A-D")
            return [DtmfIn(digits=digits)]
        self._stopped = True
        return [CallStop(reason="hangup")]

    def _parse_start(self, msg: dict[str, Any]) -> CallStart:
        where = "call start"
        call_id = get_str(msg, "call_id", where)
        if not call_id.strip():
            fail("call start: 'call_id' must not be empty")
        started_at = optional_str(msg, "started_at", where)
        if started_at is not None:
            # Checked here so a bad date fails the call at once, not at the first 昨天.
            # A time without offset is let through: the dialogue reads it as Asia/Shanghai.
            try:
                datetime.fromisoformat(started_at)
            except ValueError:
                fail(f"call start: 'started_at' {started_at!r} is not ISO 8601")
        rate = msg.get("sample_rate")
        return CallStart(
            call_id=call_id,
            encoding=Encoding.PCM16,
            sample_rate=self.default_sample_rate if rate is None else parse_sample_rate(rate, where),
            caller_number=first_scalar(msg, ("caller_number",)),  # a number as JSON number is fine too
            token=optional_str(msg, "token", where),
            flow=optional_str(msg, "flow", where),
            started_at=started_at,
            params=string_params(get_object(msg, "params", where, required=False)),
        )

    # --- outbound --------------------------------------------------------------
    def results(self, finals: list[Transcript], partial: Transcript | None) -> list[Frame]:
        frames: list[Frame] = []
        for final in finals:
            msg: dict[str, Any] = {"event": "transcript", "text": final.text, "final": True}
            if final.words:
                msg["words"] = word_dicts(final.words)
            if final.confidence is not None:
                msg["confidence"] = round_conf(final.confidence)
            frames.append(dumps(msg))
        if finals:
            self._last_partial = ""  # a new utterance starts; its first partial is news
        text = partial.text if partial is not None else ""
        if partial is not None and text != self._last_partial:
            frames.append(dumps({"event": "transcript", "text": text, "final": False}))
        self._last_partial = text
        return frames

    def play(self, pcm16: bytes, sample_rate: int, mark: str | None = None) -> list[Frame]:
        return []

    def clear(self) -> list[Frame]:
        return []

    def transfer(self, reason: str, target: str | None = None) -> list[Frame]:
        msg: dict[str, Any] = {"event": "transfer", "reason": reason}
        if target is not None:
            msg["target"] = target
        return [dumps(msg)]

    def error(self, message: str) -> list[Frame]:
        return [dumps({"event": "error", "message": message})]

    def bot_event(self, event: dict[str, Any]) -> list[Frame]:
        return [dumps(event)]


# --- frames for the dialogue engine ------------------------------------------------
def prompt_event(text: str, slot: str | None, slots: Mapping[str, Any]) -> str:
    """The bot speaks; `slot` is the slot asked for, "confirm" for the read-back, or None."""
    return dumps({"event": "prompt", "text": text, "slot": slot, "slots": dict(slots)})


def report_event(report_id: str, status: str, slots: Mapping[str, Any]) -> str:
    """The claim report as stored; status is "complete", "partial" or "transferred"."""
    return dumps({"event": "report", "report_id": report_id, "status": status, "slots": dict(slots)})


def hangup_event(reason: str) -> str:
    return dumps({"event": "hangup", "reason": reason})


def transfer_event(reason: str) -> str:
    return dumps({"event": "transfer", "reason": reason})
