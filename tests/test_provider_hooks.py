"""The provider webhooks over real HTTP: the fakes push receipts and replies (as the providers do)
to a real server running provider_hook_routes, which checks the secret or WeChat's signature,
answers in each provider's shape and hands Receipt / Reply to a recording sink."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import httpx
import pytest
from starlette.applications import Starlette

from fakes.aliyun_sms import FakeAliyunSms, LoopbackServer, Sent
from fakes.aliyun_voice import FakeAliyunVoice
from fakes.tencent_sms import FakeTencentSms
from fakes.wechat import FakeWechat
from gateway.log_redaction import redact
from gateway.settings import Settings
from gateway.web.provider_hooks import provider_hook_routes
from gateway.web.routes import routes
from scheduler.channels.aliyun_sms import AliyunConfig, AliyunSmsChannel
from scheduler.channels.base import OutboundMessage

SECRET = "hook-secret-7f3a"
WECHAT_TOKEN = "wechat-server-token"


class RecordingSink:
    """Keeps what it is handed (the real sink, the scheduler's, applies receipts idempotently)."""

    def __init__(self) -> None:
        self.receipt_items: list = []
        self.reply_items: list = []
        self.fail = False
        self._lock = threading.Lock()

    async def receipts(self, items) -> None:
        if self.fail:
            raise RuntimeError("database down")
        with self._lock:
            self.receipt_items.extend(items)

    async def replies(self, items) -> None:
        if self.fail:
            raise RuntimeError("database down")
        with self._lock:
            self.reply_items.extend(items)

    def wait_receipts(self, n: int, limit_s: float = 10.0) -> list:
        deadline = time.monotonic() + limit_s
        while len(self.receipt_items) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.receipt_items)


class Hooks:
    def __init__(self, sink, settings: Settings) -> None:
        self.server = LoopbackServer(Starlette(routes=provider_hook_routes(sink, settings)))
        self.url = self.server.url

    def hook(self, path: str, secret: str = SECRET) -> str:
        return f"{self.url}/hooks/{path}/{secret}"


SETTINGS = Settings(provider_hook_secret=SECRET, wechat_token=WECHAT_TOKEN)


@pytest.fixture
def sink():
    return RecordingSink()


@pytest.fixture
def hooks(sink):
    server = Hooks(sink, SETTINGS)
    server.server.start()
    yield server
    server.server.stop()


def _sent(out_id: str = "d-1", to: str = "13812345678", provider_id: str = "900001^0") -> Sent:
    return Sent("SendSms", out_id, to, "SMS_1", {}, provider_id, datetime.now(timezone.utc))


async def test_aliyun_receipts_arrive_at_the_sink_after_a_real_send(hooks, sink):
    with FakeAliyunSms() as fake:
        fake.auto_report_url = hooks.hook("aliyun/sms-report")
        channel = AliyunSmsChannel(AliyunConfig(fake.url, fake.access_key_id, fake.access_key_secret), "保险服务")
        try:
            accepted = await channel.send(OutboundMessage("d-e2e", "sms", "13812345678", "SMS_1", {"n": "1"}, "您好"))
        finally:
            await channel.aclose()
        [receipt] = sink.wait_receipts(1)
    assert (receipt.provider, receipt.status, receipt.delivery_id, receipt.provider_id) == (
        "aliyun_sms", "delivered", "d-e2e", accepted.provider_id)


def test_aliyun_report_answers_aliyuns_shape_and_a_replay_arrives_twice(hooks, sink):
    item = FakeAliyunSms().report(_sent(), success=False, err_code="MK:0001")
    for _ in range(2):
        response = FakeAliyunSms.push(hooks.hook("aliyun/sms-report"), [item])
        assert response.status_code == 200 and response.json() == {"code": 0, "msg": "成功"}
    # Both reach the sink: applying a receipt once is the sink's job (the scheduler's is idempotent).
    assert [(r.status, r.error, r.delivery_id) for r in sink.receipt_items] == [("failed", "MK:0001", "d-1")] * 2


@pytest.mark.parametrize("text", ["TD", "退订", "ＴＤ", "拒收", "R"])
def test_aliyun_replies_including_opt_outs_arrive_as_replies(hooks, sink, text):
    response = FakeAliyunSms.push(hooks.hook("aliyun/sms-up"), [FakeAliyunSms.reply_item("13812345678", text)])
    assert response.json() == {"code": 0, "msg": "成功"}
    [reply] = sink.reply_items
    assert (reply.provider, reply.sender, reply.text) == ("aliyun_sms", "13812345678", text)


def test_a_wrong_or_missing_secret_is_refused_and_nothing_reaches_the_sink(hooks, sink):
    item = FakeAliyunSms().report(_sent())
    wrong = FakeAliyunSms.push(hooks.hook("aliyun/sms-report", secret="guess"), [item])
    tencent = FakeTencentSms.push(hooks.hook("tencent/sms-status", secret="guess"), [])
    assert wrong.status_code == 403 and wrong.json()["code"] != 0
    assert tencent.status_code == 403 and tencent.json()["result"] != 0
    assert sink.receipt_items == []


def test_without_a_configured_secret_every_push_is_refused(sink):
    server = Hooks(sink, Settings())
    server.server.start()
    try:
        response = FakeAliyunSms.push(server.hook("aliyun/sms-report", secret=""), [])
        response2 = FakeAliyunSms.push(server.hook("aliyun/sms-report", secret="x"), [])
    finally:
        server.server.stop()
    assert response.status_code in (403, 404, 405) and response2.status_code == 403
    assert "provider_hook_secret" in response2.json()["msg"]


def test_without_a_sink_the_hooks_answer_503(sink):
    server = Hooks(lambda request: None, SETTINGS)
    server.server.start()
    try:
        aliyun = FakeAliyunSms.push(server.hook("aliyun/sms-report"), [FakeAliyunSms().report(_sent())])
        wechat = FakeWechat.push(f"{server.url}/hooks/wechat", WECHAT_TOKEN, FakeWechat.event_xml("o1", event="unsubscribe"))
    finally:
        server.server.stop()
    assert aliyun.status_code == 503 and "sink" in aliyun.json()["msg"]
    assert wechat.status_code == 503


@pytest.mark.parametrize("body, reason", [(b"{not json", "not JSON"), (b'[{"success": true}]', "biz_id"),
                                          (b'"text"', "JSON array")])
def test_malformed_bodies_are_400_with_the_reason(hooks, sink, body, reason):
    response = httpx.post(hooks.hook("aliyun/sms-report"), content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and reason in response.json()["msg"]
    assert sink.receipt_items == []


def test_a_failing_sink_answers_500_so_the_provider_sends_again(hooks, sink):
    sink.fail = True
    item = FakeAliyunSms().report(_sent())
    assert FakeAliyunSms.push(hooks.hook("aliyun/sms-report"), [item]).status_code == 500
    sink.fail = False
    assert FakeAliyunSms.push(hooks.hook("aliyun/sms-report"), [item]).status_code == 200
    assert len(sink.receipt_items) == 1


def test_aliyun_voice_reports(hooks, sink):
    fake = FakeAliyunVoice()
    sent = Sent("SingleCallByTts", "v-1", "13812345678", "TTS_1", {}, "116012354148^1", datetime.now(timezone.utc))
    response = FakeAliyunVoice.push(hooks.hook("aliyun/voice-report"), [fake.report(sent, success=False)])
    assert response.json() == {"code": 0, "msg": "成功"}
    [receipt] = sink.receipt_items
    assert (receipt.provider, receipt.status, receipt.delivery_id) == ("aliyun_voice", "no_answer", "v-1")


def test_tencent_status_and_reply_callbacks(hooks, sink):
    fake = FakeTencentSms(echo_session_context=True)
    sent = Sent("SendSms", "t-1", "+8613812345678", "1", {}, "5000:77", datetime.now(timezone.utc))
    status = FakeTencentSms.push(hooks.hook("tencent/sms-status"), [fake.status_item(sent)])
    assert status.status_code == 200 and status.json() == {"result": 0, "errmsg": "OK"}
    reply = FakeTencentSms.push(hooks.hook("tencent/sms-reply"), FakeTencentSms.reply_item("13812345678", "ＴＤ"))
    assert reply.json() == {"result": 0, "errmsg": "OK"}
    [receipt] = sink.receipt_items
    assert (receipt.provider, receipt.status, receipt.provider_id, receipt.delivery_id) == (
        "tencent_sms", "delivered", "5000:77", "t-1")
    assert [(r.sender, r.text) for r in sink.reply_items] == [("13812345678", "ＴＤ")]
    bad = httpx.post(hooks.hook("tencent/sms-reply"), json=[{"mobile": "1"}])
    assert bad.status_code == 400 and bad.json()["result"] != 0


def test_wechat_url_check_echoes_only_when_signed(hooks):
    query = FakeWechat.signed_query(WECHAT_TOKEN)
    ok = httpx.get(f"{hooks.url}/hooks/wechat", params={**query, "echostr": "8843219"})
    assert ok.status_code == 200 and ok.text == "8843219"
    bad = httpx.get(f"{hooks.url}/hooks/wechat", params={**FakeWechat.signed_query("other"), "echostr": "1"})
    assert bad.status_code == 403 and bad.text != "1"


def test_wechat_events_reach_the_sink_and_a_wrong_signature_does_not(hooks, sink):
    url = f"{hooks.url}/hooks/wechat"
    fake = FakeWechat()
    sent = Sent("template_send", "w-1", "oFollower1", "TPL", {}, "200000001", datetime.now(timezone.utc))
    for xml in (fake.template_finished(sent), fake.template_finished(sent, "failed:user block"),
                FakeWechat.event_xml("oFollower1", event="unsubscribe"),
                FakeWechat.event_xml("oFollower1", "text", Content="ＴＤ", MsgId=5)):
        response = FakeWechat.push(url, WECHAT_TOKEN, xml, openid="oFollower1")
        assert response.status_code == 200 and response.text == "success"
    assert [(r.status, r.provider_id, r.error) for r in sink.receipt_items] == [
        ("delivered", "200000001", None), ("failed", "200000001", "user block")]
    assert [(r.sender, r.event, r.text) for r in sink.reply_items] == [
        ("oFollower1", "block", ""), ("oFollower1", "unsubscribe", ""), ("oFollower1", None, "ＴＤ")]
    forged = FakeWechat.push(url, "not-our-token", FakeWechat.event_xml("oFollower1", event="unsubscribe"))
    unsigned = httpx.post(url, content=FakeWechat.event_xml("oFollower1", event="unsubscribe"))
    assert forged.status_code == 403 and unsigned.status_code == 403
    assert len(sink.reply_items) == 3
    malformed = FakeWechat.push(url, WECHAT_TOKEN, b"<xml><oops")
    assert malformed.status_code == 400 and "not XML" in malformed.text


def test_the_gateway_serves_the_hooks_and_masks_their_secret_in_logs():
    paths = {getattr(r, "path", "") for r in routes()}
    assert {"/hooks/wechat", "/hooks/aliyun/sms-report/{secret}", "/hooks/tencent/sms-status/{secret}"} <= paths
    line = redact(f'127.0.0.1:50000 - "POST /hooks/aliyun/sms-report/{SECRET} HTTP/1.1" 200')
    assert SECRET not in line and "/hooks/aliyun/sms-report/***" in line


async def test_tencent_receipts_arrive_at_the_sink_after_a_real_send(hooks, sink):
    from scheduler.channels.tencent_sms import TencentSmsChannel

    with FakeTencentSms() as fake:
        fake.auto_report_url = hooks.hook("tencent/sms-status")
        channel = TencentSmsChannel(endpoint=fake.url, secret_id=fake.secret_id, secret_key=fake.secret_key,
                                    app_id=fake.app_id, sign_name="保险服务")
        try:
            accepted = await channel.send(OutboundMessage("t-e2e", "sms", "13812345678", "1001", {"1": "x"}, "您好"))
        finally:
            await channel.aclose()
        [receipt] = sink.wait_receipts(1)
    assert (receipt.provider, receipt.status, receipt.provider_id) == ("tencent_sms", "delivered", accepted.provider_id)


async def test_wechat_receipts_arrive_at_the_sink_after_a_real_send(hooks, sink, test_database):
    from gateway.storage import migrate
    from gateway.storage.database import create_engine
    from scheduler.channels.wechat import WechatTemplateChannel
    from scheduler.channels.wechat_token import StableTokenClient, WechatTokenHolder

    engine = create_engine(test_database)
    await migrate.upgrade(engine)
    client = httpx.AsyncClient(timeout=5)
    try:
        with FakeWechat() as fake:
            fake.auto_event_url, fake.auto_event_token = f"{hooks.url}/hooks/wechat", WECHAT_TOKEN
            tokens = WechatTokenHolder(engine, StableTokenClient(fake.url, fake.app_id, fake.app_secret, client))
            channel = WechatTemplateChannel(fake.url, tokens, client=client)
            accepted = await channel.send(OutboundMessage("w-e2e", "wechat", "oFollower1", "TPL", {"first": "您好"},
                                                          "您好"))
            [receipt] = sink.wait_receipts(1)
    finally:
        await client.aclose()
        await engine.dispose()
    assert (receipt.provider, receipt.status, receipt.provider_id) == ("wechat", "delivered", accepted.provider_id)
