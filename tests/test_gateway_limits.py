"""The gateway as a running server: auth, limits, bad input, disconnects, health and metrics."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.auth import twilio_signature
from conftest import running_gateway
from calls import AUDIO, frames, generic_call, load_pcm, silence, twilio_messages, to_rate, wait_for_transcript

HELLO = AUDIO / "real" / "fireredasr2s_hello_zh.wav"  # 你好世界, 2.3 s


async def close_code(ws) -> int:
    """Wait until the server closes; its close code."""
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 20)
    return ws.close_code


async def test_health_and_metrics(gateway):
    async with httpx.AsyncClient(base_url=f"http://{gateway}") as client:
        health = (await client.get("/healthz")).json()
        assert health["status"] == "ok" and health["active_calls"] == 0
        body = (await client.get("/metrics")).text
    for name in ["gateway_active_calls", "gateway_audio_seconds_in_total", "gateway_audio_seconds_decoded_total",
                 "gateway_decode_lag_seconds", "gateway_real_time_factor", "gateway_calls_refused_total"]:
        assert f"# TYPE {name} " in body


async def test_a_call_is_transcribed_stored_and_counted(gateway):
    pcm, rate = load_pcm(HELLO)
    events = await generic_call(gateway, pcm, rate, "limits-basic")
    finals = [e for e in events if e["event"] == "transcript" and e["final"]]
    assert [f["text"].replace(" ", "") for f in finals] == ["你好世界"]
    assert finals[0]["words"][0]["start"] < finals[0]["words"][-1]["end"]
    stored = await wait_for_transcript(gateway, "limits-basic")
    assert [s["text"] for s in stored["segments"]] == ["你好世界"]
    assert stored["end_reason"] == "hangup"
    async with httpx.AsyncClient(base_url=f"http://{gateway}") as client:
        metrics = (await client.get("/metrics")).text
    assert 'gateway_calls_total{protocol="call"} 1' in metrics
    audio_in = float(next(l for l in metrics.splitlines() if l.startswith("gateway_audio_seconds_in_total")).split()[1])
    decoded = float(next(l for l in metrics.splitlines() if l.startswith("gateway_audio_seconds_decoded_total")).split()[1])
    assert audio_in == pytest.approx(len(pcm) / 2 / rate + 1.0, abs=0.05)
    assert 0 < decoded < audio_in  # the trailing second of silence was not decoded


async def test_disconnect_mid_utterance_keeps_the_final_transcript(gateway):
    pcm, rate = load_pcm(HELLO)
    subscriber = await connect(f"ws://{gateway}/ws/events?call_id=limits-cut")
    async with connect(f"ws://{gateway}/ws/call") as ws:
        await ws.send(json.dumps({"event": "start", "call_id": "limits-cut", "sample_rate": rate}))
        for frame in frames(pcm[: int(len(pcm) * 0.8)], rate):  # cut off while still speaking
            await ws.send(frame)
        await asyncio.sleep(0.3)
    # The socket closed without a stop: the gateway still flushes the recognizer.
    stored = await wait_for_transcript(gateway, "limits-cut")
    assert stored["end_reason"] == "disconnect"
    assert "".join(s["text"] for s in stored["segments"]).startswith("你好")
    seen = []
    while not seen or seen[-1]["type"] != "call.ended":
        seen.append(json.loads(await asyncio.wait_for(subscriber.recv(), 10)))
    await subscriber.close()
    assert [e["type"] for e in seen][0] == "call.started"
    assert any(e["type"] == "transcript" and e["final"] for e in seen)


async def test_over_capacity_is_refused_with_1013_and_others_carry_on(make_settings):
    with running_gateway(make_settings(max_calls=2)) as address:
        first = await connect(f"ws://{address}/ws/call")
        second = await connect(f"ws://{address}/ws/call")
        third = await connect(f"ws://{address}/ws/call")
        assert await close_code(third) == 1013
        assert "capacity" in third.close_reason
        pcm, rate = load_pcm(HELLO)
        for n, ws in enumerate([first, second]):
            await ws.send(json.dumps({"event": "start", "call_id": f"cap-{n}", "sample_rate": rate}))
            for frame in frames(pcm + silence(1.0, rate), rate):
                await ws.send(frame)
            await ws.send(json.dumps({"event": "stop"}))
            texts = [json.loads(m) async for m in ws]
            assert any(t["event"] == "transcript" and t["final"] for t in texts)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://{address}/metrics")).text
        assert 'gateway_calls_refused_total{reason="capacity"} 1' in metrics


async def test_api_keys_on_the_upgrade(make_settings):
    with running_gateway(make_settings(api_keys=("secret-key",))) as address:
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://{address}/ws/call", additional_headers={"Authorization": "Bearer wrong"})
        assert info.value.response.status_code == 403
        with pytest.raises(InvalidStatus):
            await connect(f"ws://{address}/ws/asr?token=wrong")
        pcm, rate = load_pcm(HELLO)
        events = await generic_call(address, pcm, rate, "auth-ok", headers={"Authorization": "Bearer secret-key"})
        assert any(e["event"] == "transcript" and e["final"] for e in events)
        # Without a header the key may come inside the protocol (here: the generic start's token)...
        async with connect(f"ws://{address}/ws/call") as ws:
            await ws.send(json.dumps({"event": "start", "call_id": "auth-none", "sample_rate": 16000}))
            assert await close_code(ws) == 1008
        async with connect(f"ws://{address}/ws/call") as ws:
            await ws.send(json.dumps({"event": "start", "call_id": "auth-tok", "sample_rate": 16000,
                                      "token": "secret-key"}))
            await ws.send(json.dumps({"event": "stop"}))
            assert await close_code(ws) == 1000
        # ...and Twilio carries it in customParameters.
        pcm8k = to_rate(pcm, rate, 8000)
        async with connect(f"ws://{address}/ws/twilio") as ws:
            for message in twilio_messages(pcm8k, "CA" + "1" * 32, {"token": "wrong"})[:3]:
                await ws.send(message)
            assert await close_code(ws) == 1008
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://{address}/api/calls/auth-ok/transcript")).status_code == 401
            ok = await client.get(f"http://{address}/api/calls/auth-ok/transcript",
                                  headers={"Authorization": "Bearer secret-key"})
            assert ok.status_code == 200


async def test_twilio_signature_is_checked_when_configured(make_settings):
    settings = make_settings(twilio_auth_token="tw-token", public_url="wss://gw.example.com")
    with running_gateway(settings) as address:
        with pytest.raises(InvalidStatus):
            await connect(f"ws://{address}/ws/twilio", additional_headers={"X-Twilio-Signature": "bad"})
        signature = twilio_signature("tw-token", "wss://gw.example.com/ws/twilio")
        async with connect(f"ws://{address}/ws/twilio", additional_headers={"X-Twilio-Signature": signature}) as ws:
            pcm, rate = load_pcm(HELLO)
            for message in twilio_messages(to_rate(pcm, rate, 8000), "CA" + "2" * 32):
                await ws.send(message)
            assert await close_code(ws) == 1000


async def test_idle_timeout_closes_the_call_but_keeps_what_was_said(make_settings):
    with running_gateway(make_settings(idle_timeout_s=1.0)) as address:
        pcm, rate = load_pcm(HELLO)
        async with connect(f"ws://{address}/ws/call") as ws:
            await ws.send(json.dumps({"event": "start", "call_id": "idle", "sample_rate": rate}))
            for frame in frames(pcm, rate):
                await ws.send(frame)
            messages = []
            with pytest.raises(ConnectionClosed):
                while True:
                    messages.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            assert ws.close_code == 1008
        assert any(m["event"] == "transcript" and m["final"] for m in messages)
        assert messages[-1]["event"] == "error" and "no message" in messages[-1]["message"]
        stored = await wait_for_transcript(address, "idle")
        assert stored["end_reason"] == "idle timeout" and stored["segments"]


async def test_maximum_call_duration(make_settings):
    with running_gateway(make_settings(max_call_s=1.0)) as address:
        async with connect(f"ws://{address}/ws/call") as ws:
            await ws.send(json.dumps({"event": "start", "call_id": "long", "sample_rate": 8000}))
            try:
                for _ in range(300):  # 3 s of silence in real time; the server closes after 1 s
                    await ws.send(silence(0.02, 8000))
                    await asyncio.sleep(0.01)
            except ConnectionClosed:
                pass
            assert await close_code(ws) == 1000
            assert "maximum call duration" in ws.close_reason


@pytest.mark.parametrize(
    "path, messages, code",
    [
        ("/ws/call", ["{not json"], 1007),
        ("/ws/call", [json.dumps({"event": "dance"})], 1003),
        ("/ws/call", [b"\x00\x01" * 160], 1008),  # audio before start
        ("/ws/call", [json.dumps({"event": "start", "call_id": "odd", "sample_rate": 8000}), b"\x01\x02\x03"], 1007),
        ("/ws/twilio", [json.dumps({"event": "start", "streamSid": "MZ1", "start": {
            "callSid": "CA1", "streamSid": "MZ1", "customParameters": {},
            "mediaFormat": {"encoding": "audio/x-opus", "sampleRate": 48000, "channels": 1}}})], 1003),
        ("/ws/twilio", [json.dumps({"event": "start", "streamSid": "MZ1", "start": {
            "callSid": "CA1", "streamSid": "MZ1", "customParameters": {},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}),
            json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": "!!not base64!!"}})], 1007),
        ("/ws/freeswitch?module=audio_fork", ["[1, 2, 3]"], 1007),  # its metadata must be JSON
        ("/ws/asr", ['{"config": {"sample_rate": "fast"}}'], 1007),
    ],
)
async def test_bad_input_closes_only_that_call(gateway, path, messages, code):
    pcm, rate = load_pcm(HELLO)
    healthy = asyncio.create_task(generic_call(gateway, pcm, rate, f"healthy-{code}-{path[4:]}", pace=0.002))
    async with connect(f"ws://{gateway}{path}") as ws:
        for message in messages:
            await ws.send(message)
        assert await close_code(ws) == code
    events = await healthy
    assert any(e["event"] == "transcript" and e["final"] for e in events)


async def test_oversized_frame_is_refused(make_settings):
    with running_gateway(make_settings(max_message_bytes=4096)) as address:
        async with connect(f"ws://{address}/ws/call", max_size=None) as ws:
            await ws.send(json.dumps({"event": "start", "call_id": "big", "sample_rate": 8000}))
            await ws.send(bytes(8192))
            assert await close_code(ws) == 1009


async def test_non_loopback_clients_are_refused_without_keys(make_settings):
    # The same check the server makes on every upgrade, on a client address it cannot be given here.
    from gateway.auth import Authenticator, Verdict

    auth = Authenticator(frozenset())
    assert auth.check_upgrade("127.0.0.1", {}, {}) is Verdict.ALLOWED
    assert auth.check_upgrade("::1", {}, {}) is Verdict.ALLOWED
    assert auth.check_upgrade("10.1.2.3", {}, {}) is Verdict.DENIED
    assert auth.check_upgrade("203.0.113.9", {"authorization": "Bearer x"}, {}) is Verdict.DENIED


async def test_call_events_are_posted_to_the_webhook(make_settings):
    from fake_claims import fake_claims_system

    with fake_claims_system() as receiver:
        with running_gateway(make_settings(webhook_url=receiver.url)) as address:
            pcm, rate = load_pcm(HELLO)
            await generic_call(address, pcm, rate, "hooked")
            deadline = asyncio.get_running_loop().time() + 10
            while not any(d["json"]["type"] == "call.ended" for d in receiver.deliveries()):
                assert asyncio.get_running_loop().time() < deadline, receiver.deliveries()
                await asyncio.sleep(0.05)
    events = [d["json"] for d in receiver.deliveries()]
    assert [e["type"] for e in events][0] == "call.started"
    finals = [e for e in events if e["type"] == "transcript" and e["final"]]
    assert finals and finals[0]["text"].replace(" ", "") == "你好世界" and finals[0]["call_id"] == "hooked"


def test_decode_lag_counts_only_audio_waiting_for_recognition():
    from gateway.calls.registry import CallRegistry

    registry = CallRegistry(max_calls=4)
    call = registry.open("call")
    call.first_audio = 100.0
    call.audio_seconds_processed = 3.0
    assert call.decode_lag(now=105.0) == 2.0  # 5 s of real time, 3 s recognized
    call.caught_up(now=105.0)  # the loop found nothing queued: the peer paused, we are not behind
    assert call.decode_lag(now=105.0) == 0.0
    call.audio_seconds_processed = 3.5
    assert call.decode_lag(now=106.0) == 0.5


async def test_a_paused_client_does_not_look_like_lag(make_settings):
    with running_gateway(make_settings(max_decode_lag_s=0.2)) as address:
        async with connect(f"ws://{address}/ws/call") as paused:
            await paused.send(json.dumps({"event": "start", "call_id": "paused", "sample_rate": 8000}))
            await paused.send(silence(0.1, 8000))
            await asyncio.sleep(2.0)  # sends nothing for a while (a chat call, a muted line)
            async with connect(f"ws://{address}/ws/call") as another:
                await another.send(json.dumps({"event": "start", "call_id": "another", "sample_rate": 8000}))
                await another.send(json.dumps({"event": "stop"}))
                assert await close_code(another) == 1000


async def test_vosk_clients_closing_right_after_the_eof_reply_are_hang_ups(make_settings, caplog):
    """A peer closing is a hang-up, whatever the moment: also while we send it a reply or the close."""
    import logging

    from sqlalchemy import select

    from gateway.storage.database import Database, calls

    settings = make_settings()
    pcm, rate = load_pcm(HELLO)
    chunks = frames(pcm, rate, 200)  # as vosk-server's own test client sends a file

    async def quick_call() -> None:
        async with connect(f"ws://{address}/ws/asr") as ws:
            await ws.send(json.dumps({"config": {"sample_rate": rate}}))
            for chunk in chunks:
                await ws.send(chunk)
                await ws.recv()
            await ws.send('{"eof" : 1}')
            await ws.recv()
        # the context manager closes at once, while the gateway may still be answering

    caplog.set_level(logging.INFO)
    with running_gateway(settings) as address:
        await asyncio.gather(*(quick_call() for _ in range(20)))
        database = Database.from_url(settings.effective_database_url)
        try:
            deadline = asyncio.get_running_loop().time() + 15
            while True:
                async with database.engine.connect() as conn:
                    rows = (await conn.execute(select(calls.c.end_reason, calls.c.ended_at))).all()
                if len(rows) == 20 and all(r.ended_at is not None for r in rows):
                    break
                assert asyncio.get_running_loop().time() < deadline, rows
                await asyncio.sleep(0.1)
        finally:
            await database.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    assert {r.end_reason for r in rows} <= {"eof", "hangup", "disconnect"}, [r.end_reason for r in rows]


async def test_sockets_without_a_key_hold_no_call_slot_and_must_authenticate_in_time(make_settings):
    settings = make_settings(api_keys=("secret-key",), max_calls=2, auth_timeout_s=2.0)
    with running_gateway(settings) as address:
        keyless = [await connect(f"ws://{address}/ws/call") for _ in range(4)]  # never send a start
        async with connect(f"ws://{address}/ws/call", additional_headers={"Authorization": "Bearer secret-key"}) as ws:
            await ws.send(json.dumps({"event": "start", "call_id": "auth-in", "sample_rate": 8000}))
            await ws.send(silence(0.2, 8000))
            await ws.send(json.dumps({"event": "stop"}))
            assert await close_code(ws) == 1000  # not 1013: the keyless sockets hold no slot
        for ws in keyless:
            assert await close_code(ws) == 1008
            assert ws.close_reason == "authentication timeout"  # the auth deadline, not the idle one
        # Capacity still refuses authenticated calls beyond max_calls with 1013. The call above
        # gave its slot back before its close went out, so both of these are in progress.
        held = [await connect(f"ws://{address}/ws/call?token=secret-key") for _ in range(2)]
        async with httpx.AsyncClient() as client:
            health = (await client.get(f"http://{address}/healthz")).json()
        assert health["active_calls"] == 2
        third = await connect(f"ws://{address}/ws/call?token=secret-key")
        assert await close_code(third) == 1013
        for ws in held:
            await ws.close()


async def test_a_call_the_gateway_closed_frees_its_slot_before_the_peer_sees_the_close(make_settings):
    """A platform placing its next call as soon as one ends is not refused for capacity: the slot
    is free before the close goes out, though storing the call's end comes after."""
    with running_gateway(make_settings(max_calls=1)) as address:
        for n in range(10):
            async with connect(f"ws://{address}/ws/call") as ws:
                await ws.send(json.dumps({"event": "start", "call_id": f"next-{n}", "sample_rate": 8000}))
                await ws.send(silence(0.1, 8000))
                await ws.send(json.dumps({"event": "dance"}))  # the gateway ends the call (1003)
                assert await close_code(ws) == 1003, (n, ws.close_reason)
        for n in range(10):
            stored = await wait_for_transcript(address, f"next-{n}")
            assert stored["end_reason"].startswith("protocol error")
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://{address}/metrics")).text
        assert 'gateway_calls_refused_total{reason="capacity"}' not in metrics


def test_a_released_slot_takes_the_next_call_while_the_drain_still_waits_for_the_first():
    from gateway.calls.registry import CallRegistry

    registry = CallRegistry(max_calls=1)
    first = registry.open("call")
    assert first is not None and registry.open("call") is None
    first.first_audio = 0.0  # its recognition would look ever further behind if it were counted
    registry.release(first)
    registry.release(first)  # once only
    assert registry.active == 0 and registry.max_decode_lag() == 0.0
    second = registry.open("call")
    assert second is not None and registry.active == 1 and registry.open("call") is None
    registry.close(first)
    assert registry.active == 1
    registry.close(second)
    assert registry.active == 0 and registry.open("call") is not None
