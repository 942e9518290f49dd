"""Outbound voice reminders through Twilio: the channel's Calls.create against a fake Twilio on
loopback, the gateway's TwiML and status webhooks, and reminder calls answered, spoken to and
recognized end to end with the real model (the fake Twilio streams the callee's recorded answer
to the gateway's /ws/twilio as Media Streams does)."""

from __future__ import annotations

import asyncio
import socket
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from conftest import free_port, running_gateway
from fakes.sink import RecordingSink
from fakes.twilio import Callee, fake_twilio
from gateway.web.voice_hooks import machine_twiml, receipt_of_status, stream_twiml
from scheduler.channels import twilio_voice
from scheduler.channels.base import OutboundMessage, SendError

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "tests" / "data" / "audio" / "reminder"
MESSAGE = "您的车险将于十二月三十一日到期，请及时续保。"


def reminder(delivery_id: str, to: str, **extra) -> OutboundMessage:
    return OutboundMessage(delivery_id=delivery_id, kind="voice", to=to, template="renewal_call",
                           params={"product": "车险"}, text=MESSAGE, extra=extra)


# ---------------------------------------------------------------- pure pieces


def test_calls_create_form_carries_our_delivery_id_flow_and_params() -> None:
    form = twilio_voice.create_form(reminder("d-1", "+8613800138000", machine="leave_message"),
                                    from_number="+8610000", public_url="wss://gw.example.com",
                                    machine_detection="Enable", ring_timeout_s=25)
    assert (form["To"], form["From"], form["MachineDetection"], form["Timeout"]) == (
        "+8613800138000", "+8610000", "Enable", "25")
    assert form["StatusCallbackEvent"] == "initiated ringing answered completed"
    url = urlsplit(form["Url"])
    assert (url.scheme, url.netloc, url.path) == ("https", "gw.example.com", "/voice/twilio/answer")
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query == {"delivery_id": "d-1", "flow": "reminder_call", "machine": "leave_message",
                     "p.product": "车险", "p.message": MESSAGE}
    assert form["StatusCallback"] == "https://gw.example.com/voice/twilio/status?delivery_id=d-1"


def test_bad_machine_policy_and_delivery_id_are_refused_before_any_call() -> None:
    with pytest.raises(SendError) as exc:
        twilio_voice.create_form(reminder("d-1", "+86138", machine="sing"), from_number="+86", public_url="wss://g",
                                 machine_detection="", ring_timeout_s=30)
    assert exc.value.code == "bad_machine_policy" and not exc.value.retryable
    with pytest.raises(SendError):
        twilio_voice.create_form(reminder("d 1&x", "+86138"), from_number="+86", public_url="wss://g",
                                 machine_detection="", ring_timeout_s=30)


def test_stream_twiml_connects_to_our_media_stream_with_parameters() -> None:
    twiml = stream_twiml("wss://gw.example.com", {"delivery_id": "d-1", "flow": "reminder_call", "message": 'a"<b>'})
    root = ET.fromstring(twiml)
    connect = root.find("Connect")
    assert connect is not None and connect.get("action") == "https://gw.example.com/twilio/stream-ended"
    stream = connect.find("Stream")
    assert stream is not None and stream.get("url") == "wss://gw.example.com/ws/twilio"
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == {
        "delivery_id": "d-1", "flow": "reminder_call", "message": 'a"<b>'}
    assert ET.fromstring(machine_twiml(None)).find("Hangup") is not None
    said = ET.fromstring(machine_twiml("请续保"))
    assert said.find("Say").text == "请续保" and said.find("Hangup") is not None


@pytest.mark.parametrize("form, status, error", [
    ({"CallStatus": "queued"}, None, None),
    ({"CallStatus": "initiated"}, None, None),
    ({"CallStatus": "ringing"}, "ringing", None),
    ({"CallStatus": "in-progress", "AnsweredBy": "human"}, "answered", None),
    ({"CallStatus": "completed", "AnsweredBy": "human"}, "completed", None),
    ({"CallStatus": "completed", "AnsweredBy": "machine_end_beep"}, "machine", None),
    ({"CallStatus": "busy"}, "busy", None),
    ({"CallStatus": "no-answer"}, "no_answer", None),
    ({"CallStatus": "failed", "SipResponseCode": "404"}, "failed", "404"),
    ({"CallStatus": "canceled"}, "failed", "canceled"),
])
def test_status_callbacks_map_onto_receipt_statuses(form, status, error) -> None:
    from datetime import datetime, timezone

    receipt = receipt_of_status({"CallSid": "CA1", **form}, "d-9", datetime.now(timezone.utc))
    if status is None:
        assert receipt is None
    else:
        assert (receipt.status, receipt.error, receipt.delivery_id, receipt.provider_id) == (status, error, "d-9", "CA1")


# ---------------------------------------------------------------- the channel against the fake


def channel_for(fake, **overrides) -> twilio_voice.TwilioVoice:
    values = dict(api_base=fake.url, account_sid=fake.account_sid, auth_token=fake.auth_token,
                  from_number="+8610000", public_url="wss://gw.example.com")
    values.update(overrides)
    return twilio_voice.TwilioVoice(**values)


async def test_send_places_the_call_and_maps_errors() -> None:
    with fake_twilio() as fake:
        fake.default_callee = Callee(result="busy")  # whatever the call does later: nothing listens here
        channel = channel_for(fake)
        accepted = await channel.send(reminder("d-ok", "+8613800000001"))
        assert accepted.provider == "twilio_voice" and accepted.provider_id.startswith("CA")
        assert fake.calls[0].form["To"] == "+8613800000001"

        fake.fail_next = 1
        with pytest.raises(SendError) as exc:
            await channel.send(reminder("d-5xx", "+8613800000002"))
        assert exc.value.retryable and not exc.value.maybe_sent and exc.value.code == "20500"

        wrong = channel_for(fake, auth_token="not-it")
        with pytest.raises(SendError) as exc:
            await wrong.send(reminder("d-auth", "+8613800000003"))
        assert not exc.value.retryable and exc.value.code == "20003"
        await wrong.aclose()
        await channel.aclose()
        assert len(fake.calls) == 1  # the refused ones placed nothing


async def test_unreachable_is_retryable_and_silence_after_the_request_maybe_sent() -> None:
    port = free_port()  # nothing listens there
    channel = twilio_voice.TwilioVoice(api_base=f"http://127.0.0.1:{port}", account_sid="AC1", auth_token="t",
                                       from_number="+86", public_url="wss://g")
    with pytest.raises(SendError) as exc:
        await channel.send(reminder("d-net", "+86138"))
    assert exc.value.retryable and not exc.value.maybe_sent
    await channel.aclose()

    # A server that takes the request and never answers: Twilio may be dialling already.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        silent = twilio_voice.TwilioVoice(api_base=f"http://127.0.0.1:{listener.getsockname()[1]}",
                                          account_sid="AC1", auth_token="t", from_number="+86",
                                          public_url="wss://g", timeout_s=0.5)
        with pytest.raises(SendError) as exc:
            await silent.send(reminder("d-timeout", "+86138"))
        assert exc.value.maybe_sent and not exc.value.retryable
        await silent.aclose()
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def test_factory_builds_from_settings_and_refuses_missing_credentials() -> None:
    from gateway.settings import Settings

    with pytest.raises(ValueError):
        twilio_voice.from_settings(Settings())
    channel = twilio_voice.from_settings(Settings(twilio_account_sid="AC1", twilio_auth_token="t",
                                                  twilio_from_number="+86", public_url="wss://g"))
    assert channel.calls_url == "https://api.twilio.com/2010-04-01/Accounts/AC1/Calls.json"
    asyncio.run(channel.aclose())


# ---------------------------------------------------------------- end to end


def outbound_settings(make_settings, fake, port: int, **overrides):
    values = dict(public_url=f"ws://127.0.0.1:{port}", twilio_auth_token=fake.auth_token,
                  twilio_api_base=fake.url, twilio_account_sid=fake.account_sid, twilio_from_number="+8610086",
                  tts_engine="none", prompt_chars_per_s=1000.0, no_input_s=6.0)
    values.update(overrides)
    return make_settings(**values)


async def result_of(address: str, result_id: str) -> dict:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{address}/api/results/{result_id}")
    response.raise_for_status()
    return response.json()


def outcome_receipt(sink: RecordingSink, delivery_id: str):
    got = sink.wait_for(lambda rs: any(r.outcome for r in rs) and any(r.raw.get("CallStatus") == "completed"
                                                                      for r in rs), delivery_id)
    return next(r for r in got if r.outcome), [r.status for r in got if r.outcome is None]


@pytest.mark.slow
async def test_reminder_spoken_and_answered_by_voice_end_to_end(make_settings) -> None:
    """The bot speaks the reminder (espeak TTS over the media stream), the fake callee answers
    "知道了" once the question has played, the real model hears it: outcome stored and received."""
    sink = RecordingSink()
    with fake_twilio() as fake:
        port = free_port()
        settings = outbound_settings(make_settings, fake, port, tts_engine="espeak", no_input_s=8.0)
        fake.default_callee = Callee(answer=CLIPS / "acknowledged.wav", after_marks=2)  # intro, then the question
        with running_gateway(settings, port=port, receipt_sink=sink) as address:
            channel = twilio_voice.from_settings(settings)
            accepted = await channel.send(reminder("rem-voice-1", "+8613800138001"))
            await channel.aclose()
            outcome, statuses = await asyncio.to_thread(outcome_receipt, sink, "rem-voice-1")
            (call,) = await asyncio.to_thread(fake.wait_done, 1)
            assert outcome.outcome == "acknowledged" and outcome.status == "completed"
            assert outcome.provider == "twilio_voice" and outcome.provider_id == accepted.provider_id
            stored = await result_of(address, outcome.raw["result_id"])
        assert (stored["flow"], stored["status"], stored["slots"]) == ("reminder_call", "acknowledged",
                                                                        {"answer": "acknowledged"})
        bot = [t["text"] for t in stored["transcript"] if t["speaker"] == "bot"]
        assert bot[0] == "您好，这里是保险公司客服中心。" + MESSAGE  # the message from the call's params
        assert call.parameters["delivery_id"] == "rem-voice-1" and call.parameters["message"] == MESSAGE
        assert call.media_in > 0 and call.marks[:2] == ["prompt-1", "prompt-2"]  # spoken, and played out
        assert statuses == ["ringing", "answered", "completed"]
        assert all(code == 204 for _, code in call.statuses if _ not in ("initiated",))
        assert "<Hangup/>" in call.action_twiml


@pytest.mark.slow
async def test_reminder_answers_machines_busy_and_no_answer(make_settings) -> None:
    """Several reminders at once through one gateway: refused by voice, keypad answers, a machine
    (no message, or the message when the campaign allows it), busy, no answer, an unknown flow."""
    sink = RecordingSink()
    callees = {
        "+8613900000001": Callee(answer=CLIPS / "refused.wav"),
        "+8613900000002": Callee(dtmf="9"),
        "+8613900000003": Callee(dtmf="2"),
        "+8613900000004": Callee(answered_by="machine_start"),
        "+8613900000005": Callee(answered_by="machine_end_beep"),
        "+8613900000006": Callee(result="busy"),
        "+8613900000007": Callee(result="no-answer"),
        "+8613900000008": Callee(answer=CLIPS / "renewed.wav"),
    }
    with fake_twilio() as fake:
        fake.callees = callees
        port = free_port()
        settings = outbound_settings(make_settings, fake, port)
        with running_gateway(settings, port=port, receipt_sink=sink) as address:
            channel = twilio_voice.from_settings(settings)
            sends = [
                reminder("r-refused", "+8613900000001"),
                reminder("r-key9", "+8613900000002"),
                reminder("r-key2", "+8613900000003"),
                reminder("r-machine", "+8613900000004"),
                reminder("r-message", "+8613900000005", machine="leave_message"),
                reminder("r-busy", "+8613900000006"),
                reminder("r-noanswer", "+8613900000007"),
                reminder("r-noflow", "+8613900000008", flow="no_such_flow"),
            ]
            for message in sends:
                await channel.send(message)
            await channel.aclose()
            calls = {c.form["To"]: c for c in await asyncio.to_thread(fake.wait_done, len(sends))}

            for delivery_id, expected in (("r-refused", "refused"), ("r-key9", "refused"), ("r-key2", "renewed")):
                outcome, statuses = await asyncio.to_thread(outcome_receipt, sink, delivery_id)
                assert outcome.outcome == expected, delivery_id
                assert statuses == ["ringing", "answered", "completed"], delivery_id
            refused = await result_of(address, (await asyncio.to_thread(outcome_receipt, sink, "r-refused"))[0].raw["result_id"])
            assert refused["status"] == "refused" and refused["topic"] == "reminder_outcome"
            assert [t["text"] for t in refused["transcript"] if t["speaker"] == "caller"][0].startswith("别")

            # a machine: hung up at once, no message, no stream; the receipts say machine
            machine = calls["+8613900000004"]
            assert machine.parameters == {} and machine.said is None and "<Hangup/>" in machine.twiml
            assert [r.status for r in sink.of("r-machine")] == ["ringing", "machine", "answered", "machine"]
            message = calls["+8613900000005"]
            assert message.said == MESSAGE and message.parameters == {}
            assert not any(r.outcome for r in sink.of("r-message"))

            assert [r.status for r in sink.of("r-busy")] == ["ringing", "busy"]
            assert [r.status for r in sink.of("r-noanswer")] == ["ringing", "no_answer"]

            # an unknown flow: the call ends at once, nothing said, the receipts still come
            noflow = calls["+8613900000008"]
            assert noflow.parameters["flow"] == "no_such_flow" and noflow.media_in == 0
            assert [r.status for r in sink.of("r-noflow")] == ["ringing", "answered", "completed"]
            assert not any(r.outcome for r in sink.of("r-noflow"))


async def test_webhooks_refuse_bad_signatures(make_settings) -> None:
    sink = RecordingSink()
    port = free_port()
    settings = make_settings(public_url=f"ws://127.0.0.1:{port}", twilio_auth_token="secret-token", tts_engine="none")
    with running_gateway(settings, port=port, receipt_sink=sink) as address:
        from gateway.auth import twilio_signature

        async with httpx.AsyncClient() as client:
            url = f"http://{address}/voice/twilio/status?delivery_id=d-sig"
            form = {"CallSid": "CA1", "CallStatus": "busy"}
            bad = await client.post(url, data=form, headers={"X-Twilio-Signature": "nope"})
            assert bad.status_code == 403
            good = await client.post(url, data=form, headers={"X-Twilio-Signature": twilio_signature(
                "secret-token", url, form)})
            assert good.status_code == 204
            answer = f"http://{address}/voice/twilio/answer?delivery_id=d-sig&flow=reminder_call"
            assert (await client.post(answer, data=form)).status_code == 403
    assert [r.status for r in sink.of("d-sig")] == ["busy"]


@pytest.mark.parametrize("status, body, code, retryable", [
    (429, {"code": 20429, "message": "Too Many Requests"}, "20429", True),
    (503, None, "503", True),
    (400, {"code": 21211, "message": "The 'To' number is not a valid phone number."}, "21211", False),
    (401, {"code": 20003, "message": "Authenticate"}, "20003", False),
])
def test_twilio_errors_are_retryable_only_when_trying_again_can_help(status, body, code, retryable) -> None:
    error = twilio_voice.error_of(status, body)
    assert (error.code, error.retryable, error.maybe_sent, error.fall_through) == (code, retryable, False, False)
