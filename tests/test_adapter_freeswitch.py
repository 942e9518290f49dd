"""Conformance of the FreeSWITCH adapter (mod_audio_fork, mod_audio_stream)."""

from __future__ import annotations

import base64
import json
import math
import random
import struct

import pytest

from gateway.telephony.base import AudioIn, CallStart, Ignored, ProtocolError
from gateway.telephony.freeswitch import FreeswitchAdapter, Module
from speech.codecs import Encoding
from speech.results import Transcript, Word

UUID = "3f2b8c1e-7d4a-4e8b-9c6f-1a2b3c4d5e6f"
L16_20MS_8K = struct.pack("<160h", *range(-80, 80))  # 320 bytes: one FreeSWITCH frame at 8 kHz
L16_20MS_16K = struct.pack("<320h", *range(-160, 160))
# mod_audio_fork README: ep.api('uuid_audio_fork', `${ep.uuid} start ${url} ${JSON.stringify(callerData)}`)
FORK_METADATA = json.dumps({"to": "95500", "from": "13812345678", "callid": "8a3f0c7e@10.0.0.5"})


def tone(rate: int, seconds: float) -> bytes:
    n = int(rate * seconds)
    return struct.pack(f"<{n}h", *(int(6000 * math.sin(2 * math.pi * 300 * i / rate)) for i in range(n)))


def test_mod_audio_fork_metadata_then_audio() -> None:
    a = FreeswitchAdapter(UUID)
    [start] = a.receive_text(FORK_METADATA)
    assert start == CallStart(
        call_id="8a3f0c7e@10.0.0.5",
        encoding=Encoding.PCM16,
        sample_rate=8000,
        caller_number="13812345678",
        params={"to": "95500", "from": "13812345678", "callid": "8a3f0c7e@10.0.0.5"},
        rate_assumed=True,  # neither the URL nor the metadata said: 8 kHz is a guess, and the core says so
        real_time=True,
    )
    assert a.receive_bytes(L16_20MS_8K) == [AudioIn(L16_20MS_8K)]
    assert a.started and a.sample_rate == 8000


@pytest.mark.parametrize(
    ("url_rate", "metadata", "rate", "assumed"),
    [
        (None, {}, 8000, True),
        ("16000", {}, 16000, False),
        (None, {"sampleRate": 16000}, 16000, False),  # jambonz and co. put the rate in the metadata
        ("8000", {"sample_rate": "16000"}, 16000, False),  # the metadata is the call's own word
    ],
)
def test_the_rate_said_is_used_and_a_guess_is_flagged(url_rate: str | None, metadata: dict, rate: int,
                                                      assumed: bool) -> None:
    a = FreeswitchAdapter(UUID, sample_rate=url_rate)
    [start] = a.receive_text(json.dumps(metadata))
    assert isinstance(start, CallStart) and (start.sample_rate, start.rate_assumed) == (rate, assumed)


def test_metadata_fields_override_constructor() -> None:
    a = FreeswitchAdapter(UUID, sample_rate=8000)
    meta = {"uuid": UUID, "caller_id_number": 13812345678, "token": "k-1", "sampleRate": 16000, "flow": "claim"}
    [start] = a.receive_text(json.dumps(meta))
    assert isinstance(start, CallStart)
    assert start.call_id == UUID and start.sample_rate == 16000
    assert start.caller_number == "13812345678"  # a number in loosely typed metadata is fine
    assert start.token == "k-1" and start.params["flow"] == "claim"
    [start] = FreeswitchAdapter("x").receive_text('{"call_id": "c-9", "sample_rate": "16000", "caller": "10086"}')
    assert isinstance(start, CallStart) and (start.call_id, start.sample_rate, start.caller_number) == (
        "c-9",
        16000,
        "10086",
    )


def test_mod_audio_stream_without_metadata_starts_on_first_audio() -> None:
    # `uuid_audio_stream <uuid> start ws://gw/ws/freeswitch?sample_rate=16000 mono 16k` with no metadata
    a = FreeswitchAdapter(UUID, sample_rate="16000", module="audio_stream")  # the shell passes the query value
    evs = a.receive_bytes(L16_20MS_16K)
    assert evs == [
        CallStart(call_id=UUID, encoding=Encoding.PCM16, sample_rate=16000, real_time=True),
        AudioIn(L16_20MS_16K),
    ]
    assert a.receive_bytes(L16_20MS_16K) == [AudioIn(L16_20MS_16K)]


def test_later_text_frames_are_ignored() -> None:
    a = FreeswitchAdapter(UUID)
    a.receive_text(FORK_METADATA)
    a.receive_bytes(L16_20MS_8K)
    assert a.receive_text('{"event": "hangup", "cause": "NORMAL_CLEARING"}') == []  # `stop <metadata>`


@pytest.mark.parametrize(
    ("ctor_rate", "frame", "code"),
    [
        (8000, "uuid=abc caller=138", 1007),  # not JSON
        (8000, '"abc"', 1007),
        (8000, "[1]", 1007),
        (8000, '{"sampleRate": 12.5}', 1007),
        (8000, '{"sampleRate": "fast"}', 1007),
        (8000, '{"sampleRate": 96000}', 1007),
        (8000, '{"channels": 2}', 1003),  # mix-type stereo
        ("abc", L16_20MS_8K, 1007),  # bad ?sample_rate= in the URL
        (4000, L16_20MS_8K, 1007),
        (8000, b"\x00\x01\x02", 1007),  # odd length L16
    ],
)
def test_bad_input(ctor_rate: int | str, frame: str | bytes, code: int) -> None:
    a = FreeswitchAdapter(UUID, sample_rate=ctor_rate)
    evs = a.receive_bytes(frame) if isinstance(frame, bytes) else a.receive_text(frame)
    assert len(evs) == 1 and isinstance(evs[0], ProtocolError), evs
    assert evs[0].close_code == code and evs[0].message.startswith("freeswitch")
    assert not a.started


@pytest.mark.parametrize("module", ["audio_fork", "audio_stream"])
@pytest.mark.parametrize("text", ["garbage", "[1, 2]", '"hello"', "caller=13812345678 note=" + "x" * 500, ""])
def test_text_that_is_no_json_object_after_start_is_ignored_and_reported(module: Module, text: str) -> None:
    # Both modules pass whatever `uuid_audio_* <uuid> send_text <text>` carries: not worth a call.
    a = FreeswitchAdapter(UUID, module=module)
    a.receive_bytes(L16_20MS_8K)
    [ignored] = a.receive_text(text)
    assert isinstance(ignored, Ignored)
    assert "13812345678" not in ignored.message and len(ignored.message) <= 160  # masked, truncated
    assert a.receive_bytes(L16_20MS_8K) == [AudioIn(L16_20MS_8K)]  # the call goes on


def test_audio_stream_metadata_may_be_free_text() -> None:
    # mod_audio_stream: "metadata - (optional) a valid utf-8 text to send" before the audio.
    a = FreeswitchAdapter(UUID, sample_rate=16000, module="audio_stream")
    [ignored] = a.receive_text("agent=7 queue=claims")
    assert isinstance(ignored, Ignored) and not a.started
    [start, audio] = a.receive_bytes(L16_20MS_16K)
    assert isinstance(start, CallStart) and start.sample_rate == 16000 and audio == AudioIn(L16_20MS_16K)


def test_unknown_module_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        FreeswitchAdapter(UUID, module="audio_fork2")  # type: ignore[arg-type]


def played_type(a: FreeswitchAdapter) -> str:
    return json.loads(a.play(tone(8000, 0.1), 8000)[0])["type"]


@pytest.mark.parametrize(
    ("query", "subprotocols", "module"),
    [
        ({"module": "audio_stream"}, [], "audio_stream"),
        ({"module": "audio_fork"}, [], "audio_fork"),
        ({"module": "audio_stream"}, ["audio.drachtio.org"], "audio_stream"),  # told beats guessed
        ({}, ["audio.drachtio.org"], "audio_fork"),  # mod_audio_fork always asks for its subprotocol
        ({}, [], "audio_stream"),  # mod_audio_stream asks for none
    ],
)
def test_module_per_call_from_the_url_or_the_handshake(query: dict, subprotocols: list, module: str) -> None:
    a = FreeswitchAdapter.for_connection(UUID, query, subprotocols)
    assert a.module == module
    a.receive_text(FORK_METADATA)
    assert played_type(a) == {"audio_fork": "playAudio", "audio_stream": "streamAudio"}[module]


def test_module_from_the_metadata_unless_the_url_says() -> None:
    a = FreeswitchAdapter.for_connection(UUID, {}, ["audio.drachtio.org"])
    a.receive_text('{"callId": "c-1", "module": "audio_stream"}')
    assert a.module == "audio_stream" and played_type(a) == "streamAudio"
    b = FreeswitchAdapter.for_connection(UUID, {"module": "audio_fork"}, [])
    b.receive_text('{"callId": "c-1", "module": "audio_stream"}')
    assert b.module == "audio_fork"


@pytest.mark.parametrize(("query", "frame"), [({"module": "fork"}, L16_20MS_8K), ({}, '{"module": 5}')])
def test_an_unknown_module_from_the_peer_is_refused(query: dict, frame: str | bytes) -> None:
    a = FreeswitchAdapter.for_connection(UUID, query, [])
    [err] = a.receive_bytes(frame) if isinstance(frame, bytes) else a.receive_text(frame)
    assert isinstance(err, ProtocolError) and err.close_code == 1008 and "module" in err.message


W = (Word("我", 0.2, 0.4, 1.0), Word("要", 0.4, 0.5, 0.9), Word("报案", 0.5, 0.9, 0.95))


def test_transcriptions_finals_and_changed_partials_only() -> None:
    a = FreeswitchAdapter(UUID)
    a.receive_text(FORK_METADATA)
    sent = []
    sent += a.results([], None)
    sent += a.results([], Transcript("", final=False))  # nothing said yet: nothing to send
    sent += a.results([], Transcript("我", final=False))
    sent += a.results([], Transcript("我", final=False))  # unchanged
    sent += a.results([], Transcript("我 要", final=False, words=W[:2]))
    sent += a.results([Transcript("我 要 报案", final=True, words=W, confidence=0.95)], Transcript("", final=False))
    sent += a.results([], Transcript("我", final=False))  # same text, new utterance: sent again
    msgs = [json.loads(f) for f in sent]
    assert all(m["type"] == "transcription" for m in msgs)
    assert [(m["data"]["text"], m["data"]["final"]) for m in msgs] == [
        ("我", False),
        ("我 要", False),
        ("我 要 报案", True),
        ("我", False),
    ]
    assert msgs[1]["data"]["words"][1] == {"conf": 0.9, "end": 0.5, "start": 0.4, "word": "要"}
    assert msgs[2]["data"] == {
        "text": "我 要 报案",
        "final": True,
        "words": [
            {"conf": 1.0, "end": 0.4, "start": 0.2, "word": "我"},
            {"conf": 0.9, "end": 0.5, "start": 0.4, "word": "要"},
            {"conf": 0.95, "end": 0.9, "start": 0.5, "word": "报案"},
        ],
        "confidence": 0.95,
    }
    assert "报案" in sent[2]  # UTF-8, not \u escapes


def test_final_without_words_or_confidence() -> None:
    a = FreeswitchAdapter(UUID)
    [frame] = a.results([Transcript("住院", final=True)], None)
    assert json.loads(frame) == {"type": "transcription", "data": {"text": "住院", "final": True, "words": []}}


def test_play_audio_fork() -> None:
    a = FreeswitchAdapter(UUID)
    a.receive_text(FORK_METADATA)
    pcm = tone(16000, 0.5)
    [frame] = a.play(pcm, 16000, mark="ignored")
    msg = json.loads(frame)
    assert msg["type"] == "playAudio"
    assert msg["data"]["audioContentType"] == "raw" and msg["data"]["sampleRate"] == 16000
    assert base64.b64decode(msg["data"]["audioContent"]) == pcm


def test_play_audio_stream() -> None:
    a = FreeswitchAdapter(UUID, sample_rate=8000, module="audio_stream")
    pcm = tone(8000, 0.2)
    [frame] = a.play(pcm, 8000)
    msg = json.loads(frame)
    assert msg == {
        "type": "streamAudio",
        "data": {"audioDataType": "raw", "sampleRate": 8000, "audioData": base64.b64encode(pcm).decode()},
    }


def test_play_resamples_rates_freeswitch_cannot_play() -> None:
    a = FreeswitchAdapter(UUID, sample_rate=8000)
    a.receive_bytes(L16_20MS_8K)
    [frame] = a.play(tone(22050, 1.0), 22050)
    data = json.loads(frame)["data"]
    assert data["sampleRate"] == 8000
    assert len(base64.b64decode(data["audioContent"])) == pytest.approx(16000, abs=80)
    assert a.play(b"", 8000) == []


def test_kill_transfer_error() -> None:
    a = FreeswitchAdapter(UUID)
    assert json.loads(a.clear()[0]) == {"type": "killAudio"}
    # mod_audio_stream's socket protocol has no command that stops playback: say nothing it would
    # only raise as a stray mod_audio_stream::json event.
    assert FreeswitchAdapter(UUID, module="audio_stream").clear() == []
    assert json.loads(a.transfer("caller asked for an agent", "sofia/gateway/pbx/8001")[0]) == {
        "type": "transfer",
        "data": {"reason": "caller asked for an agent", "target": "sofia/gateway/pbx/8001"},
    }
    assert json.loads(a.transfer("no_match")[0]) == {"type": "transfer", "data": {"reason": "no_match"}}
    assert json.loads(a.error("无法识别")[0]) == {"type": "error", "data": {"message": "无法识别"}}


def test_garbage_never_raises() -> None:
    rng = random.Random(5)
    for _ in range(300):
        a = FreeswitchAdapter(UUID)
        text = "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(40)))
        for e in a.receive_text(text) + a.receive_bytes(rng.randbytes(rng.randrange(64))):
            assert isinstance(e, (ProtocolError, CallStart, AudioIn))
    for meta in ('{"sampleRate": null, "channels": "2"}', '{"callId": {"x": 1}, "token": 5}', '{"sampleRate": true}'):
        for e in FreeswitchAdapter(UUID).receive_text(meta):
            assert isinstance(e, (ProtocolError, CallStart))


# --- through the running gateway -------------------------------------------------------
async def _gateway_call(address: str, query: str, subprotocols: list[str] | None) -> tuple[list[dict], str]:
    """A mod_audio_* call that starts the claim flow, sends stray text and some line noise;
    the JSON frames it got back, and /metrics afterwards."""
    import asyncio

    import httpx
    from websockets.asyncio.client import connect

    got: list[dict] = []
    kwargs = {"subprotocols": subprotocols} if subprotocols else {}
    async with connect(f"ws://{address}/ws/freeswitch{query}", max_size=None, **kwargs) as ws:
        await ws.send(json.dumps({"callId": "fs-dialect", "flow": "claim_report", "sampleRate": 8000}))
        await ws.send("hello from send_text")  # not JSON: must not end the call
        for _ in range(50):  # a second of line noise, with time for the greeting to be synthesized
            await ws.send(L16_20MS_8K)
            await asyncio.sleep(0.02)
        while not any(m.get("type") in ("playAudio", "streamAudio") for m in got):
            frame = await asyncio.wait_for(ws.recv(), 20)
            if isinstance(frame, str):
                got.append(json.loads(frame))
        assert ws.close_code is None  # still up after the stray text
    async with httpx.AsyncClient(base_url=f"http://{address}") as client:
        metrics = (await client.get("/metrics")).text
    return got, metrics


async def test_each_module_hears_prompts_in_its_own_dialect_through_the_gateway(gateway) -> None:
    got, metrics = await _gateway_call(gateway, "?module=audio_stream", None)
    [played] = [m for m in got if m["type"] in ("playAudio", "streamAudio")]
    assert played["type"] == "streamAudio" and played["data"]["audioDataType"] == "raw"
    assert len(base64.b64decode(played["data"]["audioData"])) > played["data"]["sampleRate"]  # > 0.5 s of speech
    assert 'gateway_ignored_messages_total{protocol="freeswitch"} 1' in metrics

    got, metrics = await _gateway_call(gateway, "", ["audio.drachtio.org"])  # as mod_audio_fork connects
    [played] = [m for m in got if m["type"] in ("playAudio", "streamAudio")]
    assert played["type"] == "playAudio" and played["data"]["audioContentType"] == "raw"
    assert 'gateway_ignored_messages_total{protocol="freeswitch"} 2' in metrics


async def test_real_time_16k_speech_taken_for_8k_is_flagged_through_the_gateway(gateway) -> None:
    # `uuid_audio_stream <uuid> start ws://gw/ws/freeswitch mono 16k`: the URL says no rate.
    import asyncio
    import time

    import httpx
    from websockets.asyncio.client import connect

    from calls import AUDIO, frames, load_pcm, silence, to_rate

    pcm, rate = load_pcm(AUDIO / "real" / "fireredasr2s_hello_zh.wav")
    speech = to_rate(pcm, rate, 16000) + silence(2.5, 16000)  # ~4.8 s, sent as spoken
    async with connect(f"ws://{gateway}/ws/freeswitch") as ws:
        began = time.monotonic()
        for i, frame in enumerate(frames(speech, 16000)):
            await ws.send(frame)
            await asyncio.sleep(max(0.0, began + (i + 1) * 0.02 - time.monotonic()))  # real-time pace
    async with httpx.AsyncClient(base_url=f"http://{gateway}") as client:
        metrics = (await client.get("/metrics")).text
    assert 'gateway_sample_rate_assumed_total{protocol="freeswitch",rate="8000"} 1' in metrics
    assert 'gateway_sample_rate_mismatch_total{protocol="freeswitch"} 1' in metrics
