"""Tencent SMS: TC3 signing against Tencent's documented example, SendSms against the fake over
real HTTP (success, request- and number-level errors, 5xx, timeouts), and the callback parsers."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from fakes.tencent_sms import FakeTencentSms
from scheduler.channels import tc3
from scheduler.channels.base import OutboundMessage, SendError
from scheduler.channels.tencent_sms import (
    TencentSmsChannel,
    parse_reply_callback,
    parse_status_callback,
    template_params,
)

# Tencent's "签名方法 v3" worked example (DescribeInstances on cvm, 2019-02-25).
EXAMPLE_PAYLOAD = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'


def test_tc3_reproduces_tencents_worked_example_step_by_step():
    canonical, signed = tc3.canonical_request(
        "POST", "", {"content-type": "application/json; charset=utf-8", "host": "cvm.tencentcloudapi.com"},
        EXAMPLE_PAYLOAD)
    assert signed == "content-type;host"
    assert canonical.endswith("35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064")
    to_sign = tc3.string_to_sign(canonical, 1551113065, "cvm")
    assert to_sign == ("TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n"
                       "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031")
    auth = tc3.authorization(secret_id="AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
                             secret_key="Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", service="cvm",
                             host="cvm.tencentcloudapi.com", timestamp=1551113065, payload=EXAMPLE_PAYLOAD)
    assert auth == ("TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, "
                    "SignedHeaders=content-type;host, "
                    "Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168")
    assert tc3.parse_authorization(auth).date == "2019-02-25"


def test_the_date_is_the_utc_date_of_the_timestamp():
    # 2019-02-26 00:44:25 in Shanghai is still the 25th in UTC (Tencent's own warning).
    assert tc3.utc_date(1551113065) == "2019-02-25"


def test_template_params_are_positional():
    assert template_params({"2": "b", "1": "a", "10": "c"}) == ["a", "b", "c"]
    assert template_params({"name": "张先生", "date": "12-31"}) == ["张先生", "12-31"]


def _message(delivery_id: str = "t-1", to: str = "13812345678", template: str = "1234567") -> OutboundMessage:
    return OutboundMessage(delivery_id=delivery_id, kind="sms", to=to, template=template,
                           params={"1": "张先生", "2": "2026-12-31"}, text="您的保单将于2026-12-31到期。")


@pytest.fixture
def fake():
    with FakeTencentSms() as server:
        yield server


def _channel(fake: FakeTencentSms, *, secret_key: str | None = None, timeout_s: float = 5.0,
             clock=None) -> TencentSmsChannel:
    kwargs = {"clock": clock} if clock else {}
    return TencentSmsChannel(endpoint=fake.url, secret_id=fake.secret_id, secret_key=secret_key or fake.secret_key,
                             app_id=fake.app_id, sign_name="保险服务", timeout_s=timeout_s, **kwargs)


async def test_send_carries_our_delivery_id_as_session_context(fake):
    channel = _channel(fake)
    try:
        accepted = await channel.send(_message("t-ok"))
    finally:
        await channel.aclose()
    [sent] = fake.sends
    assert accepted.provider_id == sent.provider_id and accepted.provider == "tencent_sms"
    assert (sent.out_id, sent.to, sent.params["params"]) == ("t-ok", "+8613812345678", ["张先生", "2026-12-31"])
    assert sent.fields["SmsSdkAppId"] == fake.app_id and sent.fields["SignName"] == "保险服务"


async def test_wrong_key_and_stale_timestamp_are_refused(fake):
    channel = _channel(fake, secret_key="wrong")
    stale = _channel(fake, clock=lambda: 1551113065.0)
    try:
        with pytest.raises(SendError) as wrong:
            await channel.send(_message())
        with pytest.raises(SendError) as expired:
            await stale.send(_message())
    finally:
        await channel.aclose()
        await stale.aclose()
    assert wrong.value.code == "AuthFailure.SignatureFailure" and not wrong.value.retryable
    assert expired.value.code == "AuthFailure.SignatureExpire"
    assert fake.sends == []


@pytest.mark.parametrize("code, retryable", [
    ("LimitExceeded.PhoneNumberOneHourLimit", True),
    ("InternalError.Timeout", True),
    ("FailedOperation.PhoneNumberInBlacklist", False),
    ("InvalidParameterValue.IncorrectPhoneNumber", False),
])
async def test_number_level_codes_map_to_retryable_or_not(fake, code, retryable):
    fake.error_next(code)
    channel = _channel(fake)
    try:
        with pytest.raises(SendError) as caught:
            await channel.send(_message())
    finally:
        await channel.aclose()
    assert caught.value.code == code and caught.value.retryable is retryable


async def test_request_level_rate_limit_and_5xx_are_retryable(fake):
    fake.error_next("RequestLimitExceeded", request_level=True)
    fake.fail_next(1, status=502)
    channel = _channel(fake)
    try:
        with pytest.raises(SendError) as limited:
            await channel.send(_message("t-r"))
        with pytest.raises(SendError) as bad_gateway:
            await channel.send(_message("t-r"))
        await channel.send(_message("t-r"))
    finally:
        await channel.aclose()
    assert limited.value.retryable and bad_gateway.value.retryable and bad_gateway.value.code == "http_502"
    assert fake.count("t-r") == 1


async def test_bad_number_and_template_are_refused_by_the_fake(fake):
    channel = _channel(fake)
    try:
        with pytest.raises(SendError) as number:
            await channel.send(_message(to="123"))
        with pytest.raises(SendError) as template:
            await channel.send(_message(template="SMS_1"))
    finally:
        await channel.aclose()
    assert number.value.code == "InvalidParameterValue.IncorrectPhoneNumber"
    assert template.value.code == "FailedOperation.TemplateIncorrectOrUnapproved" and not template.value.retryable


async def test_timeout_after_sending_is_maybe_sent(fake):
    fake.hang_next(1.5)
    channel = _channel(fake, timeout_s=0.3)
    try:
        with pytest.raises(SendError) as caught:
            await channel.send(_message("t-hang"))
    finally:
        await channel.aclose()
    assert caught.value.maybe_sent and not caught.value.retryable and fake.count("t-hang") == 1


def test_status_callback_items_become_receipts():
    receipts = parse_status_callback([
        {"user_receive_time": "2026-12-01 09:00:05", "nationcode": "86", "mobile": "13812345678",
         "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "用户短信送达成功", "sid": "5000:1"},
        {"user_receive_time": "2026-12-01 09:00:06", "nationcode": "86", "mobile": "13812345679",
         "report_status": "FAIL", "errmsg": "MK:0005", "description": "空号", "sid": "5000:2",
         "session_context": "t-2"},
    ])
    assert [(r.status, r.provider_id, r.delivery_id, r.error) for r in receipts] == [
        ("delivered", "5000:1", None, None), ("failed", "5000:2", "t-2", "MK:0005")]
    assert receipts[0].at == datetime(2026, 12, 1, 1, 0, 5, tzinfo=timezone.utc)


def test_reply_callback_items_become_replies():
    [reply] = parse_reply_callback({"extend": "", "mobile": "13812345678", "nationcode": "86", "sign": "保险服务",
                                    "text": "退订", "time": 1764576000})
    assert (reply.sender, reply.text) == ("13812345678", "退订")
    assert reply.at == datetime.fromtimestamp(1764576000, timezone.utc)


@pytest.mark.parametrize("payload", [[{"sid": "1", "report_status": "MAYBE"}], "x", [{"report_status": "SUCCESS"}]])
def test_malformed_status_callbacks_are_refused(payload):
    with pytest.raises(ValueError):
        parse_status_callback(payload)


def test_malformed_reply_callbacks_are_refused():
    with pytest.raises(ValueError, match="time"):
        parse_reply_callback([{"mobile": "1", "text": "TD", "time": "soon"}])
