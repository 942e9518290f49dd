"""Conformance of the vosk-server adapter with alphacep's websocket/asr_server.py protocol."""

from __future__ import annotations

import json
import random
import struct

import pytest

from gateway.telephony.base import (
    AudioIn,
    CallStart,
    CallStop,
    ConfigUpdate,
    FlushRequest,
    ProtocolError,
)
from gateway.telephony.vosk_server import VoskServerAdapter
from speech.codecs import Encoding
from speech.results import Alternative, Transcript, Word

CHUNK_8K = struct.pack("<1600h", *([100, -100] * 800))  # 0.2 s at 8 kHz, like vosk's test.py


def final(text: str, words: tuple[Word, ...] = (), conf: float | None = None, alts: tuple[Alternative, ...] = ()):
    return Transcript(text=text, final=True, words=words, confidence=conf, alternatives=alts)


W_BAOAN = (Word("我", 0.6, 0.78, 1.0), Word("要", 0.78, 0.9, 0.93), Word("报案", 0.9, 1.32, 0.871234567))
W_ZHUYUAN = (Word("住院", 2.1, 2.5, 0.8),)


def test_one_reply_per_audio_reset_eof_message() -> None:
    """config + 3 audio + reset + eof -> exactly 5 replies, in order, config unanswered."""
    a = VoskServerAdapter("call-1")
    script: list[tuple[str | bytes, list[Transcript], Transcript | None]] = [
        ('{ "config" : { "sample_rate" : 8000 } }', [], None),
        (CHUNK_8K, [], Transcript("我", final=False)),
        (CHUNK_8K, [], Transcript("我 要", final=False)),
        (CHUNK_8K, [final("我 要 报案", W_BAOAN, 0.93)], None),
        ('{"reset" : 1}', [], None),
        ('{"eof" : 1}', [final("住院", W_ZHUYUAN)], None),
    ]
    replies: list[str | bytes] = []
    events = []
    for frame, finals, partial in script:
        evs = a.receive_bytes(frame) if isinstance(frame, bytes) else a.receive_text(frame)
        assert not any(isinstance(e, ProtocolError) for e in evs), evs
        events.extend(evs)
        replies.extend(a.results(finals, partial))  # the shell calls it after every message

    assert len(replies) == 5
    parsed = [json.loads(r) for r in replies]
    assert parsed[0] == {"partial": "我"}
    assert parsed[1] == {"partial": "我 要"}
    assert parsed[2]["text"] == "我 要 报案"
    assert parsed[2]["result"][0] == {"conf": 1.0, "end": 0.78, "start": 0.6, "word": "我"}
    assert parsed[2]["result"][2]["conf"] == 0.871235  # rounded like vosk's %f
    assert list(parsed[2]["result"][0]) == ["conf", "end", "start", "word"]
    assert parsed[3] == {"text": ""}  # reset with nothing pending: an empty final
    assert parsed[4]["text"] == "住院"
    assert a.finished and a.ended

    kinds = [type(e) for e in events]
    assert kinds == [CallStart, AudioIn, AudioIn, AudioIn, FlushRequest, CallStop]
    start = events[0]
    assert isinstance(start, CallStart)
    assert start.call_id == "call-1" and start.sample_rate == 8000 and start.encoding is Encoding.PCM16
    assert events[-1] == CallStop(reason="eof")


def test_call_start_is_lazy_and_folds_every_config_before_audio() -> None:
    a = VoskServerAdapter("c", default_sample_rate=16000)
    assert a.receive_text('{"config": {"sample_rate": 8000.0, "phrase_list": ["报案", "住院", "[unk]"]}}') == []
    assert a.receive_text('{"config": {"words": false, "max_alternatives": 3}}') == []
    assert not a.started
    evs = a.receive_bytes(CHUNK_8K)
    start = evs[0]
    assert isinstance(start, CallStart)
    assert start.sample_rate == 8000
    assert start.phrases == ("报案", "住院", "[unk]")
    assert start.words is False and start.max_alternatives == 3
    assert evs[1] == AudioIn(CHUNK_8K)


def test_default_sample_rate_without_config() -> None:
    a = VoskServerAdapter("c")
    start = a.receive_bytes(b"\x00\x00" * 160)[0]
    assert isinstance(start, CallStart) and start.sample_rate == 16000
    start8 = VoskServerAdapter("c", default_sample_rate=8000).receive_text('{"eof" : 1}')[0]
    assert isinstance(start8, CallStart) and start8.sample_rate == 8000


def test_eof_without_audio_opens_and_ends_the_call() -> None:
    a = VoskServerAdapter("c")
    evs = a.receive_text('{"eof" : 1}')
    assert [type(e) for e in evs] == [CallStart, CallStop]
    assert a.ended and not a.finished
    assert [json.loads(f) for f in a.results([], None)] == [{"text": ""}]
    assert a.finished


@pytest.mark.parametrize("eof", ['{"eof" : 1}', '{"eof":1}', '{\n  "eof": 1\n}', ' {"eof": true} '])
def test_eof_in_any_json_formatting(eof: str) -> None:
    a = VoskServerAdapter("c")
    a.receive_bytes(CHUNK_8K)
    assert a.receive_text(eof) == [CallStop(reason="eof")]


def test_config_after_audio_is_a_config_update_without_reply() -> None:
    a = VoskServerAdapter("c")
    a.receive_bytes(CHUNK_8K)
    assert len(a.results([], Transcript("你好", final=False))) == 1
    evs = a.receive_text('{"config": {"phrase_list": ["理赔"], "words": 0}}')
    assert evs == [ConfigUpdate(phrases=("理赔",), words=False)]
    assert a.results([], None) == []
    # Clearing the phrase list mid-call is an empty tuple (None would mean "unchanged").
    assert a.receive_text('{"config": {"phrase_list": []}}') == [ConfigUpdate(phrases=())]
    assert a.receive_text('{"config": {"sample_rate": 16000}}') == [ConfigUpdate(sample_rate=16000)]
    assert a.receive_text('{"config": {"unknown_key": 1}}') == []  # ignored, as vosk-server does


def test_finals_reported_while_no_reply_is_owed_go_into_the_next_reply() -> None:
    a = VoskServerAdapter("c")
    a.receive_text('{"config": {"sample_rate": 8000}}')
    assert a.results([final("我 要 报案", W_BAOAN)], None) == []
    a.receive_bytes(CHUNK_8K)
    reply = json.loads(a.results([final("住院", W_ZHUYUAN)], None)[0])
    assert reply["text"] == "我 要 报案 住院"  # several finals: texts joined, words concatenated
    assert [w["word"] for w in reply["result"]] == ["我", "要", "报案", "住院"]


def test_words_disabled_gives_text_only() -> None:
    a = VoskServerAdapter("c")
    a.receive_text('{"config": {"words": false}}')
    a.receive_bytes(CHUNK_8K)
    assert json.loads(a.results([final("我 要 报案", W_BAOAN)], None)[0]) == {"text": "我 要 报案"}
    a.receive_bytes(CHUNK_8K)
    part = Transcript("我", final=False, words=(Word("我", 0.1, 0.3, 0.5),))
    assert json.loads(a.results([], part)[0]) == {"partial": "我"}


def test_partial_result_words_like_vosk() -> None:
    a = VoskServerAdapter("c")
    a.receive_bytes(CHUNK_8K)
    part = Transcript("我 要", final=False, words=W_BAOAN[:2])
    reply = json.loads(a.results([], part)[0])
    assert reply["partial"] == "我 要"
    assert reply["partial_result"][1] == {"conf": 0.93, "end": 0.9, "start": 0.78, "word": "要"}
    a.receive_bytes(CHUNK_8K)
    assert json.loads(a.results([], None)[0]) == {"partial": ""}


def test_chinese_is_not_escaped() -> None:
    a = VoskServerAdapter("c")
    a.receive_bytes(CHUNK_8K)
    assert "报案" in a.results([final("报案")], None)[0]


def test_max_alternatives() -> None:
    a = VoskServerAdapter("c")
    a.receive_text('{"config" : { "max_alternatives" : 2, "sample_rate" : 8000 } }')
    a.receive_bytes(CHUNK_8K)
    alts = (
        Alternative("我 要 报案", 215.3, W_BAOAN),
        Alternative("我 要 报 案", 201.0, ()),
        Alternative("我 药 报案", 190.0, ()),
    )
    reply = json.loads(a.results([final("我 要 报案", W_BAOAN, alts=alts)], None)[0])
    assert list(reply) == ["alternatives"]
    assert len(reply["alternatives"]) == 2
    first = reply["alternatives"][0]
    assert first["confidence"] == 215.3 and first["text"] == "我 要 报案"
    assert first["result"][0] == {"end": 0.78, "start": 0.6, "word": "我"}  # no conf inside alternatives
    assert reply["alternatives"][1] == {"confidence": 201.0, "text": "我 要 报 案"}
    # eof with nothing said still yields the alternatives shape
    a.receive_text('{"eof" : 1}')
    assert json.loads(a.results([], None)[0]) == {"alternatives": [{"confidence": 0.0, "text": ""}]}


def test_max_alternatives_without_recognizer_alternatives_uses_the_best() -> None:
    a = VoskServerAdapter("c")
    a.receive_text('{"config": {"max_alternatives": 1, "words": false}}')
    a.receive_bytes(CHUNK_8K)
    reply = json.loads(a.results([final("住院", W_ZHUYUAN, conf=0.8)], None)[0])
    assert reply == {"alternatives": [{"confidence": 0.8, "text": "住院"}]}


def test_nothing_to_play_or_transfer() -> None:
    a = VoskServerAdapter("c")
    assert a.play(b"\x00\x00", 8000, mark="m") == []
    assert a.clear() == [] and a.transfer("agent") == [] and a.error("boom") == []


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", 1007),
        ('{"eof" : 1', 1007),
        ("[1, 2]", 1007),
        ('"eof"', 1007),
        ("{}", 1003),
        ('{"partial": ""}', 1003),
        ('{"config": "sample_rate=8000"}', 1007),
        ('{"config": {"sample_rate": "fast"}}', 1007),
        ('{"config": {"sample_rate": 100}}', 1007),
        ('{"config": {"sample_rate": 8000.5}}', 1007),
        ('{"config": {"sample_rate": NaN}}', 1007),
        ('{"config": {"phrase_list": "报案"}}', 1007),
        ('{"config": {"phrase_list": [1, 2]}}', 1007),
        ('{"config": {"words": "yes"}}', 1007),
        ('{"config": {"max_alternatives": -1}}', 1007),
        ('{"config": {"max_alternatives": true}}', 1007),
        ('{"eof": 0}', 1007),
        ('{"reset": "now"}', 1007),
        ("[" * 100000, 1007),
    ],
)
def test_bad_text_frames(frame: str, code: int) -> None:
    a = VoskServerAdapter("c")
    evs = a.receive_text(frame)
    assert len(evs) == 1 and isinstance(evs[0], ProtocolError), evs
    assert evs[0].close_code == code and evs[0].message.startswith("vosk")
    assert a.results([], None) == []  # no reply owed for a rejected message


def test_odd_length_audio_is_invalid_payload() -> None:
    a = VoskServerAdapter("c")
    [err] = a.receive_bytes(b"\x01\x02\x03")
    assert isinstance(err, ProtocolError) and err.close_code == 1007 and "odd" in err.message


def test_nothing_is_accepted_after_eof() -> None:
    a = VoskServerAdapter("c")
    a.receive_text('{"eof" : 1}')
    for evs in (a.receive_bytes(CHUNK_8K), a.receive_text('{"eof" : 1}'), a.receive_text('{"config": {}}')):
        assert len(evs) == 1 and isinstance(evs[0], ProtocolError) and evs[0].close_code == 1008


def test_garbage_never_raises() -> None:
    rng = random.Random(7)
    samples = ['{"config": {"sample_rate": 1e400}}', '{"config": {"phrase_list": null}}', "\udcff", "{\"eof\": {}}"]
    samples += ["".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(40))) for _ in range(200)]
    for text in samples:
        a = VoskServerAdapter("c")
        for e in a.receive_text(text):
            assert isinstance(e, (ProtocolError, CallStart, CallStop, FlushRequest, ConfigUpdate))
        a.results([], None)
    for _ in range(200):
        a = VoskServerAdapter("c")
        a.receive_bytes(rng.randbytes(rng.randrange(50)))
        a.results([], None)
