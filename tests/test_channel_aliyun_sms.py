"""Aliyun SMS: ACS3 signing against Alibaba's own vector, SendSms against the fake over real HTTP
(success, each error class, timeouts), and the SmsReport / SmsUp parsers."""

from __future__ import annotations

import hashlib
import socket
from datetime import datetime, timezone

import pytest

from fakes.aliyun_sms import FakeAliyunSms
from scheduler.channels import acs3
from scheduler.channels.aliyun_sms import AliyunConfig, AliyunSmsChannel, parse_sms_report, parse_sms_up
from scheduler.channels.base import OutboundMessage, SendError


def test_acs3_matches_alibabas_sdk_vector():
    # alibabacloud_openapi_util (Python) test_get_authorization: same request, same expected header.
    auth = acs3.authorization(
        "GET", "/", {"test": "ok", "empty": ""}, {"x-acs-test": "http", "x-acs-TEST": "https"},
        "55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23", "acesskey", "secret")
    assert auth == ("ACS3-HMAC-SHA256 Credential=acesskey,SignedHeaders=x-acs-test,"
                    "Signature=d16b30a7699ae9e43875b13195b2f81bcc3ed10c14a9b5eb780e51619aa50be1")


def test_acs3_rpc_request_signs_every_acs_header_and_the_body():
    signed = acs3.sign_rpc(host="dysmsapi.aliyuncs.com", action="SendSms", version="2017-05-25",
                           params={"PhoneNumbers": "13800000000", "SignName": "保险 服务"},
                           access_key_id="id", access_key_secret="s",
                           at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), nonce="n1")
    assert signed.body == b"PhoneNumbers=13800000000&SignName=%E4%BF%9D%E9%99%A9%20%E6%9C%8D%E5%8A%A1"
    assert signed.headers["x-acs-content-sha256"] == hashlib.sha256(signed.body).hexdigest()
    assert signed.headers["x-acs-date"] == "2026-01-02T03:04:05Z"
    parsed = acs3.parse_authorization(signed.headers["authorization"])
    assert parsed.signed_headers == ("content-type", "host", "x-acs-action", "x-acs-content-sha256", "x-acs-date",
                                     "x-acs-signature-nonce", "x-acs-version")
    # A changed body or nonce changes the signature.
    other = acs3.sign_rpc(host="dysmsapi.aliyuncs.com", action="SendSms", version="2017-05-25",
                          params={"PhoneNumbers": "13800000001", "SignName": "保险 服务"},
                          access_key_id="id", access_key_secret="s",
                          at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), nonce="n1")
    assert acs3.parse_authorization(other.headers["authorization"]).signature != parsed.signature


def _message(delivery_id: str = "d-1", to: str = "13812345678", **kw) -> OutboundMessage:
    values = dict(delivery_id=delivery_id, kind="sms", to=to, template="SMS_100001",
                  params={"name": "张先生", "date": "2026-12-31"}, text="您的保单将于2026-12-31到期，请及时续保。")
    values.update(kw)
    return OutboundMessage(**values)


@pytest.fixture
def fake():
    with FakeAliyunSms() as server:
        yield server


def _channel(fake: FakeAliyunSms, secret: str | None = None, timeout_s: float = 5.0) -> AliyunSmsChannel:
    return AliyunSmsChannel(AliyunConfig(fake.url, fake.access_key_id, secret or fake.access_key_secret, timeout_s),
                            "保险服务")


async def test_send_is_accepted_with_our_delivery_id_as_out_id(fake):
    channel = _channel(fake)
    try:
        accepted = await channel.send(_message("d-ok", to="+8613812345678"))
    finally:
        await channel.aclose()
    assert accepted.provider == "aliyun_sms" and accepted.provider_id == fake.sends[0].provider_id
    assert accepted.segments == 1
    sent = fake.sends[0]
    assert (sent.out_id, sent.to, sent.template) == ("d-ok", "13812345678", "SMS_100001")
    assert sent.params == {"name": "张先生", "date": "2026-12-31"}
    assert sent.fields["SignName"] == "保险服务"


async def test_long_marketing_message_is_billed_per_67(fake):
    channel = _channel(fake)
    try:
        accepted = await channel.send(_message(text="续" * 70, purpose="marketing"))
    finally:
        await channel.aclose()
    # 【保险服务】 (6) + 70 + 拒收请回复R (6) = 82 characters: two parts.
    assert accepted.segments == 2


async def test_wrong_secret_is_refused_by_the_fake_and_not_retried(fake):
    channel = _channel(fake, secret="not-the-secret")
    try:
        with pytest.raises(SendError) as caught:
            await channel.send(_message())
    finally:
        await channel.aclose()
    assert caught.value.code == "SignatureDoesNotMatch"
    assert not caught.value.retryable and not caught.value.maybe_sent
    assert fake.sends == [] and fake.requests[0]["outcome"] == "SignatureDoesNotMatch"


async def test_5xx_and_throttling_are_retryable_then_the_retry_goes_through(fake):
    fake.fail_next(1, status=503)
    fake.error_next("isv.BUSINESS_LIMIT_CONTROL")
    channel = _channel(fake)
    try:
        with pytest.raises(SendError) as first:
            await channel.send(_message("d-r"))
        with pytest.raises(SendError) as second:
            await channel.send(_message("d-r"))
        accepted = await channel.send(_message("d-r"))
    finally:
        await channel.aclose()
    assert first.value.code == "http_503" and first.value.retryable and not first.value.maybe_sent
    assert second.value.code == "isv.BUSINESS_LIMIT_CONTROL" and second.value.retryable
    assert accepted.provider_id and fake.count("d-r") == 1


@pytest.mark.parametrize("to, template, code", [
    ("12345", "SMS_100001", "isv.MOBILE_NUMBER_ILLEGAL"),
    ("13812345678", "NOT_A_TEMPLATE", "isv.SMS_TEMPLATE_ILLEGAL"),
])
async def test_bad_number_or_template_is_not_retryable(fake, to, template, code):
    channel = _channel(fake)
    try:
        with pytest.raises(SendError) as caught:
            await channel.send(_message(to=to, template=template))
    finally:
        await channel.aclose()
    assert caught.value.code == code and not caught.value.retryable and not caught.value.fall_through
    assert fake.sends == []


async def test_timeout_after_sending_is_maybe_sent_and_the_fake_has_the_send(fake):
    fake.hang_next(1.5)
    channel = _channel(fake, timeout_s=0.3)
    try:
        with pytest.raises(SendError) as caught:
            await channel.send(_message("d-hang"))
    finally:
        await channel.aclose()
    assert caught.value.maybe_sent and not caught.value.retryable
    assert fake.count("d-hang") == 1  # accepted: the receipt (out_id d-hang) will reconcile the row


async def test_nothing_listening_is_retryable_and_not_maybe_sent():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = AliyunSmsChannel(AliyunConfig(f"http://127.0.0.1:{port}", "id", "secret", 2.0), "保险服务")
    try:
        with pytest.raises(SendError) as caught:
            await channel.send(_message())
    finally:
        await channel.aclose()
    assert caught.value.code == "network" and caught.value.retryable and not caught.value.maybe_sent


async def test_missing_credentials_say_which_settings(fake):
    channel = AliyunSmsChannel(AliyunConfig(fake.url, "", "", 2.0), "保险服务")
    try:
        with pytest.raises(SendError, match="aliyun_access_key_id"):
            await channel.send(_message())
    finally:
        await channel.aclose()


def test_sms_report_items_become_receipts_with_our_delivery_id():
    receipts = parse_sms_report([
        {"phone_number": "13812345678", "send_time": "2026-12-01 09:00:00", "report_time": "2026-12-01 09:00:05",
         "success": True, "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1",
         "biz_id": "900001^0", "out_id": "d-1"},
        {"phone_number": "13812345679", "send_time": "2026-12-01 09:00:00", "report_time": "2026-12-01 09:01:00",
         "success": False, "err_code": "MK:0001", "err_msg": "用户接收失败", "biz_id": "900002^0", "out_id": "d-2"},
    ])
    assert [(r.status, r.delivery_id, r.provider_id, r.error) for r in receipts] == [
        ("delivered", "d-1", "900001^0", None), ("failed", "d-2", "900002^0", "MK:0001")]
    assert receipts[0].at == datetime(2026, 12, 1, 1, 0, 5, tzinfo=timezone.utc)  # 09:00:05 in Shanghai


def test_sms_up_items_become_replies():
    [reply] = parse_sms_up([{"phone_number": "13812345678", "send_time": "2026-12-01 20:00:00", "content": "ＴＤ",
                             "sign_name": "【保险服务】", "dest_code": "1234", "sequence_id": 7}])
    assert (reply.sender, reply.text, reply.provider) == ("13812345678", "ＴＤ", "aliyun_sms")


@pytest.mark.parametrize("payload", [{"nope": 1}, "text", [{"success": True}],
                                     [{"success": True, "biz_id": "1", "report_time": "yesterday"}]])
def test_malformed_reports_are_refused_with_a_reason(payload):
    with pytest.raises(ValueError):
        parse_sms_report(payload)


@pytest.mark.parametrize("payload", ["text", [{"phone_number": "1"}],
                                     [{"phone_number": "1", "content": "x", "send_time": "bad"}]])
def test_malformed_replies_are_refused_with_a_reason(payload):
    with pytest.raises(ValueError):
        parse_sms_up(payload)


async def test_the_fake_runs_in_a_process_of_its_own_and_reports_its_log():
    import json
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    script = Path(__file__).parent / "fakes" / "aliyun_sms.py"
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        url = json.loads(proc.stdout.readline())["url"]
        channel = AliyunSmsChannel(AliyunConfig(url, "LTAI-test-key", "test-secret-0123456789"), "保险服务")
        try:
            accepted = await channel.send(_message("d-proc"))
            await channel.send(_message("d-proc"))  # the same OutId twice: one duplicate in the log
        finally:
            await channel.aclose()
        async with httpx.AsyncClient() as client:
            log = (await client.get(url + "/_fake/log")).json()
    finally:
        proc.terminate()
        proc.wait(10)
    assert log["sends"][0] == ["d-proc", accepted.provider_id] and log["duplicates"] == 1
