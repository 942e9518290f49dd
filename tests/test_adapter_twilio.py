"""Conformance of the Twilio Media Streams adapter (bidirectional <Connect><Stream>)."""

from __future__ import annotations

import base64
import json
import math
import random
import struct

import pytest

from gateway.telephony.base import AudioIn, CallStart, CallStop, DtmfIn, MarkIn, ProtocolError
from gateway.telephony.twilio import TwilioAdapter
from speech.codecs import Encoding, ulaw_decode
from speech.results import Transcript

ACCOUNT = "AC8f4a1c2b0d9e7f6a5b4c3d2e1f0a9b8c"
STREAM = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA6f6d3e5b1a2c4d8e9f0a1b2c3d4e5f6a"
SILENCE_20MS = bytes([0xFF]) * 160  # mu-law silence, one 20 ms Twilio chunk

CONNECTED = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start_msg(**media_format: object) -> str:
    fmt = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    fmt.update(media_format)
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": ACCOUNT,
                "streamSid": STREAM,
                "callSid": CALL,
                "tracks": ["inbound"],
                "mediaFormat": fmt,
                "customParameters": {"caller": "+8613812345678", "token": "k-123", "flow": "claim_report"},
            },
            "streamSid": STREAM,
        }
    )


def media_msg(seq: int, payload: bytes = SILENCE_20MS, track: str = "inbound", stream: str = STREAM) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "media": {
                "track": track,
                "chunk": str(seq - 1),
                "timestamp": str((seq - 2) * 20),
                "payload": base64.b64encode(payload).decode(),
            },
            "streamSid": stream,
        }
    )


DTMF = json.dumps(
    {"event": "dtmf", "streamSid": STREAM, "sequenceNumber": "5", "dtmf": {"track": "inbound_track", "digit": "1"}}
)
MARK = json.dumps({"event": "mark", "sequenceNumber": "6", "streamSid": STREAM, "mark": {"name": "prompt-1"}})
STOP = json.dumps(
    {"event": "stop", "sequenceNumber": "7", "streamSid": STREAM, "stop": {"accountSid": ACCOUNT, "callSid": CALL}}
)


def started() -> TwilioAdapter:
    a = TwilioAdapter()
    assert a.receive_text(CONNECTED) == []
    a.receive_text(start_msg())
    return a


def test_full_stream() -> None:
    a = TwilioAdapter()
    events = []
    for frame in (CONNECTED, start_msg(), media_msg(2), media_msg(3, bytes(range(160))), DTMF, MARK, STOP):
        events.extend(a.receive_text(frame))
    assert [type(e) for e in events] == [CallStart, AudioIn, AudioIn, DtmfIn, MarkIn, CallStop]
    start = events[0]
    assert start == CallStart(
        call_id=CALL,
        encoding=Encoding.MULAW,
        sample_rate=8000,
        caller_number="+8613812345678",
        stream_id=STREAM,
        token="k-123",
        params={"caller": "+8613812345678", "token": "k-123", "flow": "claim_report"},
    )
    assert events[1] == AudioIn(SILENCE_20MS)
    assert events[2] == AudioIn(bytes(range(160)))
    assert events[3] == DtmfIn("1") and events[4] == MarkIn("prompt-1")
    assert events[5] == CallStop(reason="hangup")
    assert a.stream_sid == STREAM and a.call_sid == CALL and a.account_sid == ACCOUNT and a.stopped


@pytest.mark.parametrize("key", ["from", "From"])
def test_caller_number_from_other_parameter_names(key: str) -> None:
    msg = json.loads(start_msg())
    msg["start"]["customParameters"] = {key: "13812345678"}
    [start] = TwilioAdapter().receive_text(json.dumps(msg))
    assert isinstance(start, CallStart) and start.caller_number == "13812345678" and start.token is None


def test_start_without_custom_parameters() -> None:
    msg = json.loads(start_msg())
    del msg["start"]["customParameters"]
    [start] = TwilioAdapter().receive_text(json.dumps(msg))
    assert isinstance(start, CallStart) and start.params == {} and start.caller_number is None


def test_outbound_track_and_unknown_events_are_ignored() -> None:
    a = started()
    assert a.receive_text(media_msg(3, track="outbound")) == []
    assert a.receive_text('{"event": "someFutureEvent", "streamSid": "%s", "x": {}}' % STREAM) == []


@pytest.mark.parametrize(
    ("fmt", "needle"),
    [
        ({"encoding": "audio/x-alaw"}, "encoding"),
        ({"encoding": "audio/l16"}, "encoding"),
        ({"sampleRate": 16000}, "sample rate"),
        ({"channels": 2}, "channel"),
    ],
)
def test_unsupported_media_format(fmt: dict[str, object], needle: str) -> None:
    [err] = TwilioAdapter().receive_text(start_msg(**fmt))
    assert isinstance(err, ProtocolError) and err.close_code == 1003 and needle in err.message


def test_binary_frames_are_unsupported() -> None:
    for a in (TwilioAdapter(), started()):
        [err] = a.receive_bytes(SILENCE_20MS)
        assert isinstance(err, ProtocolError) and err.close_code == 1003


@pytest.mark.parametrize("frame", [media_msg(2), DTMF, MARK, STOP])
def test_call_messages_before_start_break_policy(frame: str) -> None:
    a = TwilioAdapter()
    a.receive_text(CONNECTED)
    [err] = a.receive_text(frame)
    assert isinstance(err, ProtocolError) and err.close_code == 1008 and "before 'start'" in err.message


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", 1007),
        ("[]", 1007),
        ('{"streamSid": "MZ1"}', 1007),  # no event
        ('{"event": 5}', 1007),
        (media_msg(2).replace('"payload": "', '"payload": "!!'), 1007),  # base64
        (json.dumps({"event": "media", "streamSid": STREAM, "media": {"payload": 42}}), 1007),
        (json.dumps({"event": "media", "streamSid": STREAM, "media": "AAAA"}), 1007),
        (json.dumps({"event": "media", "streamSid": STREAM}), 1007),
        (json.dumps({"event": "dtmf", "streamSid": STREAM, "dtmf": {"digit": "12"}}), 1007),
        (json.dumps({"event": "dtmf", "streamSid": STREAM, "dtmf": {"digit": "x"}}), 1007),
        (json.dumps({"event": "mark", "streamSid": STREAM, "mark": {}}), 1007),
        (media_msg(2, stream="MZ00000000000000000000000000000000"), 1008),
        (start_msg(), 1008),  # duplicate start
    ],
)
def test_bad_frames_after_start(frame: str, code: int) -> None:
    [err] = started().receive_text(frame)
    assert isinstance(err, ProtocolError) and err.close_code == code and err.message.startswith("twilio"), err


def test_start_needs_call_and_stream_ids() -> None:
    msg = json.loads(start_msg())
    del msg["start"]["callSid"]
    [err] = TwilioAdapter().receive_text(json.dumps(msg))
    assert isinstance(err, ProtocolError) and err.close_code == 1007 and "callSid" in err.message
    msg = json.loads(start_msg())
    del msg["start"]["streamSid"]
    del msg["streamSid"]
    [err] = TwilioAdapter().receive_text(json.dumps(msg))
    assert isinstance(err, ProtocolError) and "streamSid" in err.message


def test_nothing_after_stop() -> None:
    a = started()
    a.receive_text(STOP)
    [err] = a.receive_text(media_msg(9))
    assert isinstance(err, ProtocolError) and err.close_code == 1008


def tone(rate: int, seconds: float, hz: float = 440.0) -> bytes:
    n = int(rate * seconds)
    return struct.pack(f"<{n}h", *(int(8000 * math.sin(2 * math.pi * hz * i / rate)) for i in range(n)))


def test_play_resamples_to_mulaw_8k_and_ends_with_a_mark() -> None:
    a = started()
    frames = a.play(tone(16000, 1.5), 16000, mark="prompt-2")
    msgs = [json.loads(f) for f in frames]
    assert [m["event"] for m in msgs] == ["media", "media", "mark"]
    assert all(m["streamSid"] == STREAM for m in msgs)
    assert msgs[-1] == {"event": "mark", "streamSid": STREAM, "mark": {"name": "prompt-2"}}
    ulaw = b"".join(base64.b64decode(m["media"]["payload"]) for m in msgs[:-1])
    assert len(ulaw) == pytest.approx(12000, abs=40)  # 1.5 s at 8 kHz, one byte per sample
    assert list(msgs[0]["media"]) == ["payload"]
    # The audio survives: decoding gives back a 440 Hz tone of about the same level.
    pcm = struct.unpack(f"<{len(ulaw)}h", ulaw_decode(ulaw))
    middle = pcm[2000:10000]
    rms = math.sqrt(sum(s * s for s in middle) / len(middle))
    assert 4500 < rms < 6800  # 8000 / sqrt(2) ~ 5657
    crossings = sum(1 for x, y in zip(middle, middle[1:]) if x < 0 <= y)
    assert 430 < crossings < 450  # one second of 440 Hz


def test_play_at_8k_is_encoded_without_resampling() -> None:
    a = started()
    pcm = tone(8000, 0.02)
    [frame] = a.play(pcm, 8000)
    payload = base64.b64decode(json.loads(frame)["media"]["payload"])
    assert len(payload) == 160


def test_play_and_clear_need_a_stream() -> None:
    a = TwilioAdapter()
    assert a.play(tone(8000, 0.1), 8000, mark="m") == []
    assert a.clear() == []
    a = started()
    assert json.loads(a.clear()[0]) == {"event": "clear", "streamSid": STREAM}


def test_no_transcript_transfer_or_error_messages() -> None:
    a = started()
    assert a.results([Transcript("我 要 报案", final=True)], Transcript("住", final=False)) == []
    assert a.transfer("agent", "+8610000") == []
    assert a.error("boom") == []


def test_garbage_never_raises() -> None:
    rng = random.Random(11)
    texts = ["".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(40))) for _ in range(200)]
    texts += [
        '{"event": "start"}',
        '{"event": "start", "start": {"callSid": "CA1", "streamSid": "MZ1", "mediaFormat": []}}',
        '{"event": "start", "start": {"callSid": "CA1", "streamSid": "MZ1", "customParameters": {"a": {"b": 1}}}}',
        '{"event": "media", "media": {"payload": "A"}}',
    ]
    for text in texts:
        a = started() if rng.random() < 0.5 else TwilioAdapter()
        for e in a.receive_text(text):
            assert isinstance(e, (ProtocolError, CallStart, AudioIn, DtmfIn, MarkIn, CallStop))
