"""WeChat: the shared access-token holder (one token for every process, refreshed before expiry,
no stampede), template sends against the fake over real HTTP (token refresh and retry, fall
through, retryable errors, client_msg_id dedupe, timeouts), and the pushed XML events."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from fakes.wechat import FakeWechat
from gateway.storage import migrate
from gateway.storage.database import create_engine
from scheduler.channels.base import OutboundMessage, SendError
from scheduler.channels.wechat import WechatTemplateChannel, check_signature, parse_push, push_signature
from scheduler.channels.wechat_token import StableTokenClient, WechatTokenHolder


@pytest.fixture
def fake():
    with FakeWechat(followers={"oFollower1", "oFollower2", "oRefuser"}, refused={"oRefuser"}) as server:
        yield server


@pytest.fixture
async def engines(test_database):
    """Two engines on one database: two processes sharing the token."""
    first, second = create_engine(test_database), create_engine(test_database)
    await migrate.upgrade(first)
    yield first, second
    await first.dispose()
    await second.dispose()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def _holder(engine, fake: FakeWechat, client: httpx.AsyncClient, clock=None) -> WechatTokenHolder:
    fetch = StableTokenClient(fake.url, fake.app_id, fake.app_secret, client)
    return WechatTokenHolder(engine, fetch, name="wechat:test", **({"clock": clock} if clock else {}))


async def test_two_processes_share_one_token_and_only_one_fetches(fake, engines):
    async with httpx.AsyncClient(timeout=10) as client:
        a, b = _holder(engines[0], fake, client), _holder(engines[1], fake, client)
        tokens = await asyncio.gather(a.token(), b.token(), a.token(), b.token())
    assert len(set(tokens)) == 1
    assert fake.token_requests == [False]  # one stable_token call for both "processes"
    assert a.fetches + b.fetches == 1


async def test_the_token_is_refreshed_before_it_expires(fake, engines):
    clock = Clock()
    async with httpx.AsyncClient(timeout=10) as client:
        holder = _holder(engines[0], fake, client, clock)
        first = await holder.token()
        clock.now += timedelta(seconds=6000)  # 7200 s tokens: still well inside
        assert await holder.token() == first and holder.fetches == 1
        clock.now += timedelta(seconds=1000)  # 200 s left, inside the 300 s margin
        await holder.token()
    assert holder.fetches == 2 and fake.token_requests == [False, False]  # never forced


async def test_a_refused_token_is_force_refreshed_once_across_processes(fake, engines):
    async with httpx.AsyncClient(timeout=10) as client:
        a, b = _holder(engines[0], fake, client), _holder(engines[1], fake, client)
        stale = await a.token()
        assert await b.token() == stale
        fresh = await asyncio.gather(a.invalidate(stale), b.invalidate(stale))
    assert fresh[0] == fresh[1] != stale
    assert fake.token_requests.count(True) == 1  # the second refresher found the new token stored


async def test_wrong_app_secret_is_a_clear_permanent_error(fake, engines):
    async with httpx.AsyncClient(timeout=10) as client:
        holder = WechatTokenHolder(engines[0], StableTokenClient(fake.url, fake.app_id, "wrong", client))
        with pytest.raises(SendError) as caught:
            await holder.token()
    assert caught.value.code == "token_40125" and not caught.value.retryable


def _message(delivery_id: str = "w-1", to: str = "oFollower1") -> OutboundMessage:
    return OutboundMessage(delivery_id=delivery_id, kind="wechat", to=to, template="TPL_RENEWAL",
                           params={"first": "您的保单即将到期", "keyword1": "2026-12-31"}, text="您的保单即将到期",
                           extra={"url": "https://insurer.example/renew"})


@pytest.fixture
async def channel(fake, engines):
    client = httpx.AsyncClient(timeout=5)
    channel = WechatTemplateChannel(fake.url, _holder(engines[0], fake, client), client=client)
    yield channel
    await client.aclose()


async def test_template_send_carries_client_msg_id(fake, channel):
    accepted = await channel.send(_message("w-ok"))
    [sent] = fake.sends
    assert accepted.provider_id == sent.provider_id and accepted.provider == "wechat"
    assert sent.fields["client_msg_id"] == "w-ok" and sent.fields["url"] == "https://insurer.example/renew"
    assert sent.params == {"first": {"value": "您的保单即将到期"}, "keyword1": {"value": "2026-12-31"}}


@pytest.mark.parametrize("spoil, code", [("expire_tokens", "42001"), ("revoke_tokens", "40001")])
async def test_an_expired_or_invalid_token_is_refreshed_and_the_send_retried_once(fake, channel, spoil, code):
    await channel.send(_message("w-before"))
    getattr(fake, spoil)()
    await channel.send(_message("w-after"))
    assert [r["outcome"] for r in fake.requests] == ["ok", code, "ok"]
    assert fake.count("w-after") == 1 and fake.token_requests == [False, True]


async def test_a_token_refused_twice_is_retryable(fake, channel):
    await channel.send(_message("w-0"))
    fake.error_next(40001, n=2)
    with pytest.raises(SendError) as caught:
        await channel.send(_message("w-1"))
    assert caught.value.code == "40001" and caught.value.retryable and fake.count("w-1") == 0


@pytest.mark.parametrize("to, code", [("oStranger", "43004"), ("oRefuser", "43101"), ("not-an-openid", "40003")])
async def test_unreachable_recipients_fall_through(fake, channel, to, code):
    with pytest.raises(SendError) as caught:
        await channel.send(_message(to=to))
    assert caught.value.code == code and caught.value.fall_through and not caught.value.retryable


@pytest.mark.parametrize("errcode, retryable", [(45009, True), (-1, True), (40037, False), (47003, False)])
async def test_errcodes_map_to_retryable_or_not(fake, channel, errcode, retryable):
    fake.error_next(errcode)
    with pytest.raises(SendError) as caught:
        await channel.send(_message())
    assert caught.value.retryable is retryable and not caught.value.fall_through


async def test_5xx_is_retryable(fake, channel):
    fake.fail_next(1, status=503)
    with pytest.raises(SendError) as caught:
        await channel.send(_message())
    assert caught.value.code == "http_503" and caught.value.retryable


async def test_a_resend_within_ten_minutes_is_not_delivered_twice(fake, channel):
    first = await channel.send(_message("w-same"))
    second = await channel.send(_message("w-same"))
    assert first.provider_id == second.provider_id
    assert fake.count("w-same") == 1 and [r["outcome"] for r in fake.requests] == ["ok", "deduplicated"]


async def test_timeout_after_sending_is_maybe_sent(fake, engines):
    client = httpx.AsyncClient(timeout=0.5)
    channel = WechatTemplateChannel(fake.url, _holder(engines[0], fake, client), client=client)
    try:
        await channel.tokens.token()  # the token first, so only the send hangs
        fake.hang_next(2.0)
        with pytest.raises(SendError) as caught:
            await channel.send(_message("w-hang"))
    finally:
        await client.aclose()
    assert caught.value.maybe_sent and fake.count("w-hang") == 1


def test_push_signature_is_sha1_of_the_sorted_parts():
    import hashlib

    assert push_signature("tok", "1700000000", "abc") == hashlib.sha1(b"1700000000abctok").hexdigest()
    assert check_signature("tok", push_signature("tok", "1", "n"), "1", "n")
    assert not check_signature("tok", push_signature("other", "1", "n"), "1", "n")
    assert not check_signature("", "x", "1", "n")


def test_template_finish_events_become_receipts_and_a_block_is_also_a_reply():
    for status, expected, error in [("success", "delivered", None), ("failed:user block", "failed", "user block"),
                                    ("failed: system failed", "failed", "system failed")]:
        receipts, replies = parse_push(FakeWechat.event_xml("oFollower1", event="TEMPLATESENDJOBFINISH",
                                                            MsgID=200000001, Status=status, at=1764576000))
        assert [(r.status, r.provider_id, r.error) for r in receipts] == [(expected, "200000001", error)]
        assert receipts[0].at == datetime.fromtimestamp(1764576000, timezone.utc)
        assert [r.event for r in replies] == (["block"] if error == "user block" else [])


def test_unsubscribe_text_and_subscription_rejects_become_replies():
    _, [unsubscribed] = parse_push(FakeWechat.event_xml("oFollower1", event="unsubscribe"))
    assert (unsubscribed.event, unsubscribed.sender) == ("unsubscribe", "oFollower1")
    _, [text] = parse_push(FakeWechat.event_xml("oFollower1", "text", Content="退订", MsgId=1))
    assert (text.text, text.event) == ("退订", None)
    reject = (b"<xml><ToUserName>gh</ToUserName><FromUserName>oF</FromUserName><CreateTime>1</CreateTime>"
              b"<MsgType>event</MsgType><Event>subscribe_msg_change_event</Event><SubscribeMsgChangeEvent><List>"
              b"<TemplateId>T1</TemplateId><SubscribeStatusString>reject</SubscribeStatusString></List>"
              b"</SubscribeMsgChangeEvent></xml>")
    assert [r.event for r in parse_push(reject)[1]] == ["block"]
    assert parse_push(FakeWechat.event_xml("oFollower1", event="CLICK", EventKey="MENU")) == ([], [])


@pytest.mark.parametrize("body", [b"not xml", b"<html></html>", b"<xml><MsgType>event</MsgType></xml>",
                                  b'<!DOCTYPE x [<!ENTITY a "b">]><xml></xml>',
                                  FakeWechat.event_xml("o1", event="TEMPLATESENDJOBFINISH")])
def test_malformed_pushes_are_refused(body):
    with pytest.raises(ValueError):
        parse_push(body)
