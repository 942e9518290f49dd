"""The Event Socket protocol without sockets: frames split anywhere, events decoded, the client's
auth and reply pairing, and the originate / stream commands and receipts of reminder calls."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from scheduler.channels import esl
from scheduler.channels.base import OutboundMessage, SendError
from scheduler.channels.freeswitch_voice import (
    CALL_VAR, DELIVERY_VAR, originate_command, receipt_of_event, stream_command,
)

AT = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
UUID = "5f0c7c1e-2f7a-4b8e-9d3e-0b1d2c3e4f50"


def test_frames_split_at_every_byte_come_out_whole() -> None:
    wire = (esl.serialize_frame({"Content-Type": "auth/request"})
            + esl.serialize_frame({"Content-Type": "command/reply", "Reply-Text": "+OK accepted"})
            + esl.serialize_frame({"Content-Type": "api/response"}, "+OK 好\n".encode())
            + esl.serialize_event({"Event-Name": "CHANNEL_ANSWER", "Unique-ID": UUID,
                                   "variable_note": "a b: c%d\n"}))
    for step in (1, 7, len(wire)):
        parser = esl.EslParser()
        frames = []
        for i in range(0, len(wire), step):
            frames += parser.feed(wire[i:i + step])
        assert [f.content_type for f in frames] == ["auth/request", "command/reply", "api/response", "text/event-plain"]
        assert frames[1].reply_text == "+OK accepted"
        assert frames[2].body.decode() == "+OK 好\n"
        event = esl.parse_event(frames[3])
        assert (event.name, event.unique_id, event.get("variable_note")) == ("CHANNEL_ANSWER", UUID, "a b: c%d\n")


def test_event_with_a_body_of_its_own_and_custom_subclass() -> None:
    frame = esl.EslParser().feed(esl.serialize_event({"Event-Name": "BACKGROUND_JOB", "Job-UUID": "j1"},
                                                     "-ERR USER_BUSY\n"))[0]
    event = esl.parse_event(frame)
    assert (event.name, event.get("Job-UUID"), event.body) == ("BACKGROUND_JOB", "j1", "-ERR USER_BUSY\n")
    custom = esl.parse_event(esl.EslParser().feed(esl.serialize_event(
        {"Event-Name": "CUSTOM", "Event-Subclass": "mod_audio_stream::json"}))[0])
    assert custom.name == "mod_audio_stream::json"


@pytest.mark.parametrize("wire, message", [
    (b"Content-Type auth/request\n\n", "without a colon"),
    (b"Content-Type: api/response\nContent-Length: x\n\n", "bad Content-Length"),
    (b"Content-Type: api/response\nContent-Length: -5\n\n", "out of range"),
    (b"X" * (esl.MAX_HEADER_BYTES + 1), "no end of an ESL header block"),
])
def test_broken_frames_are_clear_errors(wire: bytes, message: str) -> None:
    with pytest.raises(esl.EslError, match=message):
        esl.EslParser().feed(wire)


def test_commands_cannot_smuggle_a_second_command() -> None:
    assert esl.command("bgapi status", {"Job-UUID": "j"}) == b"bgapi status\nJob-UUID: j\n\n"
    with pytest.raises(esl.EslError):
        esl.command("api status\n\nauth x")


def test_client_authenticates_then_pairs_replies_in_order() -> None:
    client = esl.EslClient("ClueCon")
    out, write = client.receive(esl.serialize_frame({"Content-Type": "auth/request"}))
    assert out == [] and write == b"auth ClueCon\n\n" and client.state == "authenticating"
    with pytest.raises(esl.EslError):
        client.subscribe_frame(("CHANNEL_ANSWER",))  # not before the password is accepted
    out, _ = client.receive(esl.serialize_frame({"Content-Type": "command/reply", "Reply-Text": "+OK accepted"}))
    assert out == [esl.Authenticated()] and client.state == "ready"
    assert client.subscribe_frame(("CHANNEL_ANSWER", "BACKGROUND_JOB")) == b"event plain CHANNEL_ANSWER BACKGROUND_JOB\n\n"
    assert client.bgapi_frame("originate x &park()", job_uuid="job-1") == b"bgapi originate x &park()\nJob-UUID: job-1\n\n"
    assert client.api_frame("status", tag="st") == b"api status\n\n"
    wire = (esl.serialize_frame({"Content-Type": "command/reply", "Reply-Text": "+OK event listener enabled plain"})
            + esl.serialize_frame({"Content-Type": "command/reply", "Reply-Text": "-ERR no reply"})
            + esl.serialize_frame({"Content-Type": "api/response"}, b"UP 0 years\n")
            + esl.serialize_frame({"Content-Type": "text/disconnect-notice"}, b"Disconnected, goodbye.\n"))
    out, _ = client.receive(wire)
    assert out == [esl.Reply("subscribe", True, "+OK event listener enabled plain"),
                   esl.Reply("job-1", False, "-ERR no reply"), esl.Reply("st", False, "UP 0 years"),
                   esl.Disconnected("Disconnected, goodbye.")]
    with pytest.raises(esl.EslError, match="nobody asked"):
        client.receive(esl.serialize_frame({"Content-Type": "command/reply", "Reply-Text": "+OK"}))


def test_a_wrong_password_is_reported() -> None:
    client = esl.EslClient("wrong")
    client.receive(esl.serialize_frame({"Content-Type": "auth/request"}))
    out, _ = client.receive(esl.serialize_frame({"Content-Type": "command/reply", "Reply-Text": "-ERR invalid"}))
    assert out == [esl.AuthFailed("-ERR invalid")] and client.state == "failed"


def message(**overrides) -> OutboundMessage:
    values = dict(delivery_id=UUID, kind="voice", to="13800138000", template="renewal_call",
                  params={"product": "车险"}, text="您的车险 12月31日 到期。")
    values.update(overrides)
    return OutboundMessage(**values)


def test_originate_uses_our_delivery_id_as_the_call_uuid() -> None:
    line = originate_command(message(), gateway="carrier", ring_timeout_s=25)
    assert line.startswith(f"originate {{origination_uuid={UUID},{DELIVERY_VAR}={UUID},{CALL_VAR}=")
    assert line.endswith("}sofia/gateway/carrier/13800138000 &park()") and "originate_timeout=25" in line
    for bad in (message(to="138 0013"), message(delivery_id="a,b"), message(to="1380013800;x")):
        with pytest.raises(SendError) as exc:
            originate_command(bad, gateway="carrier", ring_timeout_s=25)
        assert not exc.value.retryable
    with pytest.raises(SendError, match="freeswitch_gateway"):
        originate_command(message(), gateway="", ring_timeout_s=25)


def answered_event() -> esl.EslEvent:
    """CHANNEL_ANSWER as FreeSWITCH sends it for the call the originate above placed."""
    line = originate_command(message(extra={"flow": "reminder_call"}), gateway="carrier", ring_timeout_s=25,
                             owner="proc-1")
    variables = dict(v.split("=", 1) for v in line[line.index("{") + 1:line.index("}")].split(","))
    return esl.EslEvent("CHANNEL_ANSWER", {"Unique-ID": UUID, **{f"variable_{k}": v for k, v in variables.items()}})


@pytest.mark.parametrize("module, api", [("audio_stream", "uuid_audio_stream"), ("audio_fork", "uuid_audio_fork")])
def test_answer_starts_the_stream_with_the_calls_metadata(module: str, api: str) -> None:
    line = stream_command(answered_event(), module=module, stream_url="ws://gw:8000/ws/freeswitch", owner="proc-1")
    assert line is not None
    # another scheduler process hears the same event: it does not stream the call a second time
    assert stream_command(answered_event(), module=module, stream_url="ws://g", owner="proc-2") is None
    parts = line.split(" ", 5)
    assert parts[:3] == [api, UUID, "start"] and parts[4] == "mono"
    assert parts[3] == f"ws://gw:8000/ws/freeswitch?module={module}&sample_rate=8000&call_id={UUID}"
    rest = line.split(" ", 5)[5]
    assert rest.startswith("8k ") and " " not in rest[3:]  # the metadata is one token
    metadata = json.loads(rest[3:])
    assert metadata == {"product": "车险", "message": "您的车险 12月31日 到期。", "callId": UUID, "delivery_id": UUID,
                        "flow": "reminder_call", "provider": "freeswitch_voice", "caller": "13800138000",
                        "sampleRate": 8000, "module": module}
    # not ours (an inbound call on the same switch): nothing
    assert stream_command(esl.EslEvent("CHANNEL_ANSWER", {"Unique-ID": "x"}), module=module, stream_url="ws://g") is None


@pytest.mark.parametrize("cause, status, error", [
    ("NORMAL_CLEARING", "completed", None), ("USER_BUSY", "busy", None), ("NO_ANSWER", "no_answer", None),
    ("NO_USER_RESPONSE", "no_answer", None), ("CALL_REJECTED", "busy", None),
    ("UNALLOCATED_NUMBER", "failed", "UNALLOCATED_NUMBER"), ("", "failed", "UNKNOWN"),
])
def test_hangup_causes_become_receipts(cause: str, status: str, error: str | None) -> None:
    event = esl.EslEvent("CHANNEL_HANGUP_COMPLETE", {"Unique-ID": UUID, f"variable_{DELIVERY_VAR}": UUID,
                                                     "Hangup-Cause": cause})
    receipt = receipt_of_event(event, AT)
    assert (receipt.status, receipt.error, receipt.delivery_id, receipt.provider_id) == (status, error, UUID, UUID)


def test_progress_answer_and_failed_jobs_become_receipts() -> None:
    ours = {f"variable_{DELIVERY_VAR}": UUID, "Unique-ID": UUID}
    assert receipt_of_event(esl.EslEvent("CHANNEL_PROGRESS", ours), AT).status == "ringing"
    assert receipt_of_event(esl.EslEvent("CHANNEL_ANSWER", ours), AT).status == "answered"
    assert receipt_of_event(esl.EslEvent("CHANNEL_ANSWER", {"Unique-ID": "other"}), AT) is None
    jobs = {"job-1": UUID}
    busy = receipt_of_event(esl.EslEvent("BACKGROUND_JOB", {"Job-UUID": "job-1"}, "-ERR USER_BUSY\n"), AT, jobs)
    assert (busy.status, busy.delivery_id) == ("busy", UUID)
    gone = receipt_of_event(esl.EslEvent("BACKGROUND_JOB", {"Job-UUID": "job-1"}, "-ERR GATEWAY_DOWN\n"), AT, jobs)
    assert (gone.status, gone.error) == ("failed", "GATEWAY_DOWN")
    assert receipt_of_event(esl.EslEvent("BACKGROUND_JOB", {"Job-UUID": "job-1"}, f"+OK {UUID}\n"), AT, jobs) is None
    assert receipt_of_event(esl.EslEvent("BACKGROUND_JOB", {"Job-UUID": "not-ours"}, "-ERR X\n"), AT, jobs) is None
