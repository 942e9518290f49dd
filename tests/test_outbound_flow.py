"""The reminder call as data: a flow's declared `params` filled per call, the reminder flow's
answers (speech, keypad, refusal, a person), and its outcome handed to the receipt sink by the
gateway's result listener — here over /ws/call by text, which runs the same call core."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from conftest import running_gateway
from fakes.sink import RecordingSink
from speech.dialogue.actions import Hangup, Prompt, Report, Transfer
from speech.dialogue.binding import load_bound_flows
from speech.dialogue.engine import Dialogue
from speech.dialogue.flow import FlowError, parse_flow
from speech.understanding.types import CallContext

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = "您的车险将于十二月三十一日到期，请及时续保。"
INTRO = "您好，这里是保险公司客服中心。" + MESSAGE


def renewal_flow(**extra) -> dict:
    return {
        "name": "renewal_call", "params": ["product", "expiry_date"],
        "formats": {"day": {"date": "{month}月{day}日", "other_year": "{year}年{month}月{day}日"}},
        "intro": "您的{product}将于{expiry_date:day}到期。",
        "slots": [{"name": "answer", "prompts": ["{product}续保了吗？"]}],
        "closing": "再见。", "transfer": "请稍候。", **extra,
    }


def test_params_fill_the_texts_of_one_call_and_leave_slots_alone() -> None:
    flow = parse_flow(renewal_flow(closing="好的，{answer}，{product}。"))
    assert flow.params == ("product", "expiry_date")
    assert flow.missing_params({"product": "车险"}) == ("expiry_date",)
    assert flow.missing_params({"product": "车险", "expiry_date": " "}) == ("expiry_date",)
    filled = flow.with_params({"product": "车险", "expiry_date": "2026-12-31", "other": "x"})
    assert filled.intro == "您的车险将于12月31日到期。"
    assert filled.slots[0].prompts == ("车险续保了吗？",)
    assert filled.closing[0].text == "好的，{answer}，车险。"  # the slot's placeholder waits for its value
    assert flow.intro == "您的{product}将于{expiry_date:day}到期。"  # the loaded flow is untouched


@pytest.mark.parametrize("change, message", [
    ({"params": ["answer"]}, "params[0]"),  # a slot's name
    ({"params": "product"}, "expected a list"),
    ({"params": ["product"]}, "intro: placeholder {expiry_date}"),  # used, not declared
])
def test_params_are_checked_when_the_flow_loads(change: dict, message: str) -> None:
    with pytest.raises(FlowError, match=message.replace("{", r"\{").replace("}", r"\}").replace("[", r"\[")
                       .replace("]", r"\]")):
        parse_flow(renewal_flow(**change))


@pytest.fixture(scope="module")
def reminder():
    flow, reader = load_bound_flows(ROOT / "config")["reminder_call"]
    return flow.with_params({"message": MESSAGE}), reader


def run(reminder, *turns: str) -> list:
    flow, reader = reminder
    dialogue = Dialogue(flow, reader, CallContext(started_at=datetime(2026, 12, 1, 10).astimezone()))
    actions = dialogue.start()
    for turn in turns:
        if turn.startswith("#"):
            actions = dialogue.on_dtmf(turn[1:])
        elif turn == "":
            actions = dialogue.on_no_input()
        else:
            actions = dialogue.on_text(turn, 0.9)
    return actions


def test_the_reminder_is_said_then_one_question_with_its_answers_as_grammar(reminder) -> None:
    intro, question = run(reminder)
    assert isinstance(intro, Prompt) and intro.text == INTRO and intro.slot is None
    assert question.slot == "answer" and "按1" in question.text and "按9" in question.text
    assert {"知道了", "好的", "已经续保了", "续过了", "转人工", "人工客服", "别再打了", "不要再打"} <= set(question.hints)


@pytest.mark.parametrize("turns, outcome", [
    (["知道了"], "acknowledged"), (["好的，谢谢"], "acknowledged"), (["我已经续保了"], "renewed"),
    (["续过了"], "renewed"), (["#1"], "acknowledged"), (["#2"], "renewed"), (["#0"], "agent"),
    (["#9"], "do_not_call"), (["别再打了"], "refused"), (["不要再打了"], "refused"),
    (["嗯……什么", "啊？"], "no_response"), (["", ""], "no_response"), (["嗯？", "知道了"], "acknowledged"),
])
def test_each_answer_is_an_outcome_after_at_most_one_re_prompt(reminder, turns: list[str], outcome: str) -> None:
    actions = run(reminder, *turns)
    report = next(a for a in actions if isinstance(a, Report))
    assert report.status == outcome and report.topic == "reminder_outcome"
    assert isinstance(actions[-1], Hangup)


def test_a_person_please_transfers(reminder) -> None:
    for said in ("转人工", "我要人工客服"):
        actions = run(reminder, said)
        assert isinstance(actions[-1], Transfer) and actions[-1].reason == "caller_request"


# ---------------------------------------------------------------- over the gateway


async def text_call(address: str, call_id: str, params: dict, answer: str | None) -> tuple[list[dict], int | None]:
    events: list[dict] = []
    async with connect(f"ws://{address}/ws/call") as ws:
        await ws.send(json.dumps({"event": "start", "flow": "reminder_call", "call_id": call_id,
                                  "caller_number": "13800138000", "params": params}, ensure_ascii=False))
        try:
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), 15))
                events.append(event)
                if event["event"] in {"hangup", "transfer"}:
                    break
                if event["event"] == "prompt" and event["slot"] and answer is not None:
                    key = "digits" if answer.startswith("#") else "text"
                    await ws.send(json.dumps({"event": "dtmf" if key == "digits" else "text",
                                              key: answer.lstrip("#")}, ensure_ascii=False))
            await asyncio.wait_for(ws.recv(), 15)
        except ConnectionClosed:
            pass
        return events, ws.close_code


async def test_outcomes_reach_the_sink_and_missing_params_end_the_call(make_settings, caplog) -> None:
    sink = RecordingSink()
    with running_gateway(make_settings(tts_engine="none"), receipt_sink=sink) as address:
        params = {"delivery_id": "d-ack", "message": MESSAGE, "provider": "twilio_voice", "token": "k"}
        events, _ = await text_call(address, "call-ack", params, "知道了")
        assert [e["text"] for e in events if e["event"] == "prompt"][0] == INTRO
        (receipt,) = await asyncio.to_thread(sink.wait_for, lambda rs: len(rs) == 1, "d-ack", 15)
        assert (receipt.status, receipt.outcome, receipt.provider, receipt.provider_id) == (
            "completed", "acknowledged", "twilio_voice", "call-ack")
        assert "token" not in json.dumps(receipt.raw)  # the call's API key goes nowhere

        # 转人工 before anything was said: still a result (transferred), the outcome `agent`
        events, _ = await text_call(address, "call-agent", {"delivery_id": "d-agent", "message": MESSAGE}, "转人工")
        assert events[-1] == {"event": "transfer", "reason": "caller_request"}
        (receipt,) = await asyncio.to_thread(sink.wait_for, lambda rs: len(rs) == 1, "d-agent", 15)
        assert receipt.outcome == "agent"
        async with httpx.AsyncClient() as client:
            stored = (await client.get(f"http://{address}/api/results/{receipt.raw['result_id']}")).json()
        assert (stored["status"], stored["topic"], stored["call_id"]) == ("transferred", "reminder_outcome", "call-agent")

        events, _ = await text_call(address, "call-key", {"delivery_id": "d-key", "message": MESSAGE}, "#9")
        (receipt,) = await asyncio.to_thread(sink.wait_for, lambda rs: len(rs) == 1, "d-key", 15)
        assert receipt.outcome == "refused"

        # a call without the flow's params: a clear log line, nothing said, a normal close
        events, code = await text_call(address, "call-bare", {"delivery_id": "d-bare"}, "知道了")
        assert not any(e["event"] == "prompt" for e in events) and code == 1000
        assert any("needs the call parameters message" in r.getMessage() for r in caplog.records)

        # a flow's result for a call placed for no delivery: none of the sink's business
        events, _ = await text_call(address, "call-inbound", {"message": MESSAGE}, "知道了")
        assert any(e["event"] == "report" and e["status"] == "acknowledged" for e in events)
    assert {r.delivery_id for r in sink.received} == {"d-ack", "d-agent", "d-key"}
