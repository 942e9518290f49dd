"""Conformance of the generic call protocol adapter with /work/shared/eval/CONTRACT.md."""

from __future__ import annotations

import json
import random
import struct

import pytest

from gateway.telephony.base import AudioIn, CallStart, CallStop, DtmfIn, ProtocolError, TextIn
from gateway.telephony.generic import (
    GenericCallAdapter,
    hangup_event,
    prompt_event,
    report_event,
    transfer_event,
)
from speech.codecs import Encoding
from speech.results import Transcript, Word

# Exactly what simcaller.py sends (text mode omits sample_rate, audio mode adds 8000).
START_TEXT = json.dumps(
    {
        "event": "start",
        "flow": "claim_report",
        "call_id": "dev-0000",
        "caller_number": "16066907439",
        "started_at": "2026-03-19T10:16:00+08:00",
    },
    ensure_ascii=False,
)
START_AUDIO = json.dumps({**json.loads(START_TEXT), "sample_rate": 8000})
FRAME_20MS_8K = struct.pack("<160h", *(i % 48 - 24 for i in range(160)))


def started(start: str = START_TEXT) -> GenericCallAdapter:
    a = GenericCallAdapter()
    [ev] = a.receive_text(start)
    assert isinstance(ev, CallStart)
    return a


def test_text_call() -> None:
    a = GenericCallAdapter()
    events = []
    for frame in (
        START_TEXT,
        json.dumps({"event": "text", "text": "我叫韦文博"}, ensure_ascii=False),
        '{"event": "dtmf", "digits": "1#"}',
        '{"event": "stop"}',
    ):
        events += a.receive_text(frame)
    assert events == [
        CallStart(
            call_id="dev-0000",
            encoding=Encoding.PCM16,
            sample_rate=16000,
            caller_number="16066907439",
            flow="claim_report",
            started_at="2026-03-19T10:16:00+08:00",
        ),
        TextIn("我叫韦文博"),
        DtmfIn("1#"),
        CallStop(reason="hangup"),
    ]
    assert a.stopped


def test_audio_call() -> None:
    a = GenericCallAdapter()
    [start] = a.receive_text(START_AUDIO)
    assert isinstance(start, CallStart) and start.sample_rate == 8000 and start.encoding is Encoding.PCM16
    assert a.receive_bytes(FRAME_20MS_8K) == [AudioIn(FRAME_20MS_8K)]


def test_minimal_start_and_optional_fields() -> None:
    a = GenericCallAdapter(default_sample_rate=8000)
    [start] = a.receive_text('{"event": "start", "call_id": "c1", "caller_number": null, "token": "k"}')
    assert start == CallStart(call_id="c1", encoding=Encoding.PCM16, sample_rate=8000, token="k")
    [start] = GenericCallAdapter().receive_text('{"event":"start","call_id":"c2","started_at":"2026-03-19T10:16:00"}')
    assert isinstance(start, CallStart) and start.started_at == "2026-03-19T10:16:00"


@pytest.mark.parametrize(
    "frame",
    [
        '{"event": "text", "text": "你好"}',
        '{"event": "dtmf", "digits": "1"}',
        '{"event": "stop"}',
        FRAME_20MS_8K,
    ],
)
def test_anything_before_start_breaks_policy(frame: str | bytes) -> None:
    a = GenericCallAdapter()
    [err] = a.receive_bytes(frame) if isinstance(frame, bytes) else a.receive_text(frame)
    assert isinstance(err, ProtocolError) and err.close_code == 1008 and "before 'start'" in err.message


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("hello", 1007),
        ('{"event": "start"', 1007),
        ('[{"event": "start"}]', 1007),
        ('{"type": "start"}', 1007),  # no event field
        ('{"event": ["start"]}', 1007),
        ('{"event": "hello"}', 1003),
        ('{"event": "prompt", "text": "x"}', 1003),  # a gateway->client event sent the wrong way
        ('{"event": "start"}', 1007),  # no call_id
        ('{"event": "start", "call_id": "  "}', 1007),
        ('{"event": "start", "call_id": 7}', 1007),
        ('{"event": "start", "call_id": "c", "started_at": "yesterday"}', 1007),
        ('{"event": "start", "call_id": "c", "started_at": 1700000000}', 1007),
        ('{"event": "start", "call_id": "c", "sample_rate": 0}', 1007),
        ('{"event": "start", "call_id": "c", "sample_rate": "fast"}', 1007),
        ('{"event": "start", "call_id": "c", "sample_rate": 8000.5}', 1007),
        ('{"event": "start", "call_id": "c", "flow": 3}', 1007),
    ],
)
def test_bad_frames_before_start(frame: str, code: int) -> None:
    a = GenericCallAdapter()
    [err] = a.receive_text(frame)
    assert isinstance(err, ProtocolError) and err.close_code == code and err.message.startswith("call"), err
    assert not a.started


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (START_TEXT, 1008),  # duplicate start
        ('{"event": "text"}', 1007),
        ('{"event": "text", "text": 5}', 1007),
        ('{"event": "dtmf", "digits": ""}', 1007),
        ('{"event": "dtmf", "digits": "12x"}', 1007),
        ('{"event": "dtmf", "digits": 12}', 1007),
        ('{"event": "bye"}', 1003),
        (b"\x00\x01\x02", 1007),  # odd-length PCM
    ],
)
def test_bad_frames_after_start(frame: str | bytes, code: int) -> None:
    a = started()
    [err] = a.receive_bytes(frame) if isinstance(frame, bytes) else a.receive_text(frame)
    assert isinstance(err, ProtocolError) and err.close_code == code, err


def test_nothing_after_stop() -> None:
    a = started()
    a.receive_text('{"event": "stop"}')
    for evs in (a.receive_text('{"event": "text", "text": "x"}'), a.receive_bytes(FRAME_20MS_8K), a.receive_text(START_TEXT)):
        assert len(evs) == 1 and isinstance(evs[0], ProtocolError) and evs[0].close_code == 1008


def test_transcripts() -> None:
    a = started(START_AUDIO)
    words = (Word("我", 0.1, 0.3, 1.0), Word("叫", 0.3, 0.5, 0.8))
    sent = []
    sent += a.results([], Transcript("我", final=False))
    sent += a.results([], Transcript("我", final=False))  # unchanged: not sent again
    sent += a.results([Transcript("我 叫", final=True, words=words, confidence=0.9)], None)
    sent += a.results([Transcript("韦文博", final=True)], Transcript("好", final=False))
    msgs = [json.loads(f) for f in sent]
    assert msgs == [
        {"event": "transcript", "text": "我", "final": False},
        {
            "event": "transcript",
            "text": "我 叫",
            "final": True,
            "words": [
                {"conf": 1.0, "end": 0.3, "start": 0.1, "word": "我"},
                {"conf": 0.8, "end": 0.5, "start": 0.3, "word": "叫"},
            ],
            "confidence": 0.9,
        },
        {"event": "transcript", "text": "韦文博", "final": True},
        {"event": "transcript", "text": "好", "final": False},
    ]
    assert "韦文博" in sent[2]


def test_outbound_frames() -> None:
    a = started()
    assert json.loads(a.transfer("caller_request")[0]) == {"event": "transfer", "reason": "caller_request"}
    assert json.loads(a.transfer("x", "8001")[0]) == {"event": "transfer", "reason": "x", "target": "8001"}
    assert json.loads(a.error("bad frame")[0]) == {"event": "error", "message": "bad frame"}
    assert a.play(FRAME_20MS_8K, 8000, mark="m") == [] and a.clear() == []


def test_dialogue_helpers_follow_the_contract() -> None:
    slots = {"reporter_name": "韦文博", "relationship": "本人"}
    p = prompt_event("请问您的联系电话是多少？", "reporter_phone", slots)
    assert "韦文博" in p
    assert json.loads(p) == {"event": "prompt", "text": "请问您的联系电话是多少？", "slot": "reporter_phone", "slots": slots}
    assert json.loads(prompt_event("再见", None, {}))["slot"] is None
    assert json.loads(report_event("R-1", "partial", slots)) == {
        "event": "report",
        "report_id": "R-1",
        "status": "partial",
        "slots": slots,
    }
    assert json.loads(hangup_event("completed")) == {"event": "hangup", "reason": "completed"}
    assert json.loads(transfer_event("caller_request")) == {"event": "transfer", "reason": "caller_request"}


def test_garbage_never_raises() -> None:
    rng = random.Random(3)
    for _ in range(300):
        a = started() if rng.random() < 0.5 else GenericCallAdapter()
        text = "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(40)))
        for e in a.receive_text(text) + a.receive_bytes(rng.randbytes(rng.randrange(64))):
            assert isinstance(e, (ProtocolError, CallStart, AudioIn, TextIn, DtmfIn, CallStop))
