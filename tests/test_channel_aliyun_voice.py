"""Aliyun voice notification: SingleCallByTts against the fake over real HTTP, and VoiceReport parsing."""

from __future__ import annotations

import pytest

from fakes.aliyun_voice import FakeAliyunVoice
from scheduler.channels.aliyun_sms import AliyunConfig
from scheduler.channels.aliyun_voice import AliyunVoiceChannel, parse_voice_report
from scheduler.channels.base import OutboundMessage, SendError


def _message(delivery_id: str = "v-1", to: str = "13812345678", template: str = "TTS_200001") -> OutboundMessage:
    return OutboundMessage(delivery_id=delivery_id, kind="voice", to=to, template=template,
                           params={"name": "张先生", "days": "3"}, text="张先生您好，您的保单三天后到期。",
                           extra={"play_times": 2})


@pytest.fixture
def fake():
    with FakeAliyunVoice() as server:
        yield server


def _channel(fake, secret=None, show="057100000000"):
    return AliyunVoiceChannel(AliyunConfig(fake.url, fake.access_key_id, secret or fake.access_key_secret, 5.0), show)


async def test_call_is_placed_with_our_delivery_id_and_the_tts_params(fake):
    channel = _channel(fake)
    try:
        accepted = await channel.send(_message("v-ok"))
    finally:
        await channel.aclose()
    [sent] = fake.sends
    assert accepted.provider == "aliyun_voice" and accepted.provider_id == sent.provider_id
    assert (sent.out_id, sent.to, sent.template, sent.params) == ("v-ok", "13812345678", "TTS_200001",
                                                                  {"name": "张先生", "days": "3"})
    assert sent.fields["CalledShowNumber"] == "057100000000" and sent.fields["PlayTimes"] == "2"


async def test_errors_are_classified(fake):
    fake.error_next("isv.BUSINESS_LIMIT_CONTROL")
    channel = _channel(fake)
    bad = _channel(fake, secret="nope")
    try:
        with pytest.raises(SendError) as limited:
            await channel.send(_message())
        with pytest.raises(SendError) as template:
            await channel.send(_message(template="SMS_1"))
        with pytest.raises(SendError) as signature:
            await bad.send(_message())
    finally:
        await channel.aclose()
        await bad.aclose()
    assert limited.value.retryable and limited.value.provider == "aliyun_voice"
    assert template.value.code == "isv.TTS_TEMPLATE_ILLEGAL" and not template.value.retryable
    assert signature.value.code == "SignatureDoesNotMatch"
    assert fake.sends == []


async def test_voice_reports_map_answered_busy_and_unanswered(fake):
    channel = _channel(fake)
    try:
        for n in range(4):
            await channel.send(_message(f"v-{n}"))
    finally:
        await channel.aclose()
    items = [fake.report(fake.sends[0]), fake.report(fake.sends[1], success=False),
             fake.report(fake.sends[2], success=False, status_code="200002", status_msg="用户忙"),
             fake.report(fake.sends[3], smart_status_code="ANSWERED")]
    receipts = parse_voice_report(items)
    assert [(r.status, r.delivery_id) for r in receipts] == [
        ("delivered", "v-0"), ("no_answer", "v-1"), ("busy", "v-2"), ("delivered", "v-3")]
    assert receipts[0].provider_id == fake.sends[0].provider_id and receipts[1].error.startswith("200005")


@pytest.mark.parametrize("payload", ["x", [{"status_code": "200000"}], [{"call_id": "1", "status_code": "200000",
                                                                          "end_time": "later"}]])
def test_malformed_voice_reports_are_refused(payload):
    with pytest.raises(ValueError):
        parse_voice_report(payload)
