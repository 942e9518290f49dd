"""Outbound voice reminders through FreeSWITCH: the channel originates over a fake Event Socket
server on loopback; the answered call is streamed (as mod_audio_stream / mod_audio_fork do) to
the gateway's /ws/freeswitch, where the reminder flow runs and the real model hears the answer."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import free_port, running_gateway
from fakes.freeswitch_esl import EslCallee, fake_freeswitch
from fakes.sink import RecordingSink
from gateway.settings import Settings
from scheduler.channels import freeswitch_voice
from scheduler.channels.base import OutboundMessage, SendError

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "tests" / "data" / "audio" / "reminder"
MESSAGE = "您的车险将于十二月三十一日到期，请及时续保。"


def reminder(number: str, **extra) -> OutboundMessage:
    return OutboundMessage(delivery_id=str(uuid.uuid4()), kind="voice", to=number, template="renewal_call",
                           params={"product": "车险"}, text=MESSAGE, extra=extra)


def channel(fake, sink, stream_url: str = "ws://127.0.0.1:9/ws/freeswitch", **overrides):
    values = dict(host="127.0.0.1", port=fake.port, password=fake.password, gateway="carrier",
                  stream_url=stream_url, sink=sink, timeout_s=5.0)
    values.update(overrides)
    return freeswitch_voice.FreeswitchVoice(**values)


async def test_busy_and_no_answer_become_receipts_and_the_uuid_is_ours() -> None:
    sink = RecordingSink()
    with fake_freeswitch() as fake:
        fake.callees = {"13900000006": EslCallee(result="busy"), "13900000007": EslCallee(result="no-answer")}
        fs = channel(fake, sink)
        busy, silent = reminder("13900000006"), reminder("13900000007")
        accepted = await fs.send(busy)
        await fs.send(silent)
        assert (accepted.provider, accepted.provider_id) == ("freeswitch_voice", busy.delivery_id)
        await asyncio.to_thread(fake.wait_done, 2)
        got = await asyncio.to_thread(sink.wait_for, lambda rs: len(rs) >= 3, busy.delivery_id, 10)
        assert [r.status for r in got] == ["ringing", "busy", "busy"]  # the job's -ERR, then the hangup
        got = await asyncio.to_thread(sink.wait_for, lambda rs: len(rs) >= 3, silent.delivery_id, 10)
        assert [r.status for r in got] == ["ringing", "no_answer", "no_answer"]
        assert {c.uuid for c in fake.calls} == {busy.delivery_id, silent.delivery_id}
        assert fake.commands[0] == "auth ***" and fake.commands[1].startswith("event plain ")
        await fs.aclose()


async def test_a_connection_lost_before_the_reply_is_maybe_sent_and_the_next_send_reconnects() -> None:
    sink = RecordingSink()
    with fake_freeswitch() as fake:
        fake.default_callee = EslCallee(result="busy")
        fake.drop_next_originates = 1
        fs = channel(fake, sink)
        first, second = reminder("13900000021"), reminder("13900000022")
        with pytest.raises(SendError) as exc:
            await fs.send(first)
        assert exc.value.maybe_sent and not exc.value.retryable  # reconciled from events, not dialled again
        accepted = await fs.send(second)
        assert accepted.provider_id == second.delivery_id
        await asyncio.to_thread(fake.wait_done, 1)
        assert [c.uuid for c in fake.calls] == [second.delivery_id]
        assert [c for c in fake.commands if c == "auth ***"] == ["auth ***", "auth ***"]  # a new connection
        await fs.aclose()


async def test_connection_and_auth_failures_are_send_errors() -> None:
    sink = RecordingSink()
    port = free_port()  # nothing listens there
    fs = freeswitch_voice.FreeswitchVoice(host="127.0.0.1", port=port, password="x", gateway="g",
                                          stream_url="ws://g/ws/freeswitch", sink=sink, timeout_s=2.0)
    with pytest.raises(SendError) as exc:
        await fs.send(reminder("13800000001"))
    assert exc.value.retryable
    with fake_freeswitch("right") as fake:
        wrong = channel(fake, sink, password="wrong")
        with pytest.raises(SendError) as exc:
            await wrong.send(reminder("13800000001"))
        assert exc.value.code == "auth" and not exc.value.retryable
        assert fake.calls == [] and fake.auth_failures == 1
        await wrong.aclose()


def test_factory_builds_from_settings() -> None:
    sink = RecordingSink()
    fs = freeswitch_voice.from_settings(Settings(public_url="wss://gw.example.com", freeswitch_gateway="carrier"), sink)
    assert fs.stream_url == "wss://gw.example.com/ws/freeswitch" and fs.module == "audio_stream"
    with pytest.raises(ValueError):
        freeswitch_voice.from_settings(Settings(freeswitch_stream_module="mod_x", public_url="ws://g"), sink)
    with pytest.raises(ValueError):
        freeswitch_voice.from_settings(Settings(), sink)  # nowhere to stream to


async def result_of(address: str, result_id: str) -> dict:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{address}/api/results/{result_id}")
    response.raise_for_status()
    return response.json()


@pytest.mark.slow
@pytest.mark.parametrize("module", ["audio_stream", "audio_fork"])
async def test_reminder_answered_by_voice_through_freeswitch(make_settings, module: str) -> None:
    """Originate, answer, stream to the gateway (each module's dialect), "我已经续保了" / "我要转人工"
    heard by the real model: the outcomes stored and received by the sink, the hang-ups too."""
    sink = RecordingSink()
    with fake_freeswitch() as fake:
        fake.callees = {"13800000011": EslCallee(answer=CLIPS / "renewed.wav", after_prompts=2),
                        "13800000012": EslCallee(answer=CLIPS / "agent.wav", after_prompts=2)}
        port = free_port()
        settings = make_settings(public_url=f"ws://127.0.0.1:{port}", freeswitch_esl_port=fake.port,
                                 freeswitch_gateway="carrier", freeswitch_stream_module=module,
                                 tts_engine="espeak", no_input_s=8.0)
        with running_gateway(settings, port=port, receipt_sink=sink) as address:
            fs = freeswitch_voice.from_settings(settings, sink)
            renewed, agent = reminder("13800000011"), reminder("13800000012")
            await fs.send(renewed)
            await fs.send(agent)
            calls = {c.number: c for c in await asyncio.to_thread(fake.wait_done, 2)}
            done = lambda rs: any(r.outcome for r in rs) and any(r.raw.get("Hangup-Cause") for r in rs)  # noqa: E731
            got = await asyncio.to_thread(sink.wait_for, done, renewed.delivery_id, 30)
            outcome = next(r for r in got if r.outcome)
            assert outcome.outcome == "renewed" and outcome.provider == "freeswitch_voice"
            assert [r.status for r in got if not r.outcome] == ["ringing", "answered", "completed"]
            stored = await result_of(address, outcome.raw["result_id"])
            assert (stored["flow"], stored["status"], stored["call_id"]) == ("reminder_call", "renewed",
                                                                             renewed.delivery_id)
            assert stored["transcript"][0]["text"] == "您好，这里是保险公司客服中心。" + MESSAGE

            got = await asyncio.to_thread(sink.wait_for, done, agent.delivery_id, 30)
            assert next(r for r in got if r.outcome).outcome == "agent"  # 转人工: transferred, and said so
            await fs.aclose()
        call = calls["13800000011"]
        assert call.stream_command.startswith(
            ("uuid_audio_stream " if module == "audio_stream" else "uuid_audio_fork ") + renewed.delivery_id + " start ")
        assert call.metadata["delivery_id"] == renewed.delivery_id and call.metadata["flow"] == "reminder_call"
        assert call.subprotocol == ("audio.drachtio.org" if module == "audio_fork" else None)
        assert call.prompts >= 3 and call.transcripts  # spoken to, and what was heard sent back
        assert calls["13800000012"].hangup_cause == "NORMAL_CLEARING"
