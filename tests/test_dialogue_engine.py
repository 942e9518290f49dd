"""The dialogue engine with a scripted fake extractor: what it asks, fills, reads back and reports."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from speech.dialogue.actions import Hangup, Prompt, Report, Transfer
from speech.dialogue.engine import Dialogue
from speech.dialogue.flow import load_flow
from speech.dialogue.records import PolicyRecord, RecordIndex
from speech.understanding.types import CallContext, Extraction, SlotProblem, SlotValue

ROOT = Path(__file__).resolve().parents[1]
FLOW = load_flow(ROOT / "config" / "flows" / "claim_report.yaml")
CST = timezone(timedelta(hours=8))
CALLER = "16066907439"

WEI = dict(
    reporter_name="韦文博", relationship="本人", insured_name="韦文博", insured_id_number="330106199011130961",
    reporter_phone="18000806360", incident_date="2026-03-17", incident_type="意外", hospital="深圳市人民医院",
    diagnosis="软组织挫伤",
)


def ex(affirm: bool | None = None, correction: bool = False, use_caller_number: bool = False,
       wants_human: bool = False, problems: dict[str, str] | None = None, confidence: float = 1.0,
       **values: str) -> Extraction:
    return Extraction(
        values={k: SlotValue(k, v, confidence) for k, v in values.items()},
        problems={k: SlotProblem(k, code) for k, code in (problems or {}).items()},
        affirm=affirm, correction=correction, use_caller_number=use_caller_number, wants_human=wants_human,
    )


class Scripted:
    """A fake extractor: each utterance's extraction is given by the test; unknown text → nothing."""

    def __init__(self, script: dict[str, Extraction]) -> None:
        self.script = script
        self.seen: list[tuple[str, str | None]] = []  # (text, expected_slot)

    def extract(self, text: str, context: CallContext) -> Extraction:
        self.seen.append((text, context.expected_slot))
        return self.script.get(text, Extraction())


def context(caller: str | None = CALLER) -> CallContext:
    return CallContext(started_at=datetime(2026, 3, 19, 10, 16, tzinfo=CST), caller_number=caller)


def record(**overrides: object) -> PolicyRecord:
    values = dict(policy_number="P1", product="住院医疗", holder_name="韦文博", insured_name="韦文博",
                  insured_id_number="330106199011130961", phone="18000806360",
                  start_date=date(2025, 1, 1), expiry_date=date(2027, 1, 1))
    values.update(overrides)
    return PolicyRecord(**values)  # type: ignore[arg-type]


def dialogue(script: dict[str, Extraction], records: RecordIndex | None = None, caller: str | None = CALLER,
             flow=FLOW) -> tuple[Dialogue, Scripted]:
    fake = Scripted(script)
    return Dialogue(flow, fake, context(caller), records), fake


def prompts(actions) -> list[Prompt]:
    return [a for a in actions if isinstance(a, Prompt)]


def last_prompt(actions) -> Prompt:
    found = prompts(actions)
    assert found, actions
    return found[-1]


def check_protocol(actions) -> None:
    """CONTRACT: a report before hangup/transfer whenever a slot was filled; nothing after the end."""
    for i, action in enumerate(actions):
        if isinstance(action, (Hangup, Transfer)):
            assert i == len(actions) - 1
            filled = any(isinstance(a, Prompt) and a.slots for a in actions[:i])
            if filled:
                assert isinstance(actions[0], Report), actions


def play(d: Dialogue, utterances: list[str]) -> list:
    """Start the call and say `utterances`; every action list is checked; returns all actions."""
    out = d.start()
    for text in utterances:
        assert not d.finished, f"call ended before {text!r}"
        actions = d.on_text(text)
        check_protocol(actions)
        out += actions
    return out


# ---------------------------------------------------------------- happy paths


def test_happy_path_self_with_record_in_six_turns() -> None:
    script = {
        "我要报案，我叫韦文博，给我自己报": ex(reporter_name="韦文博", relationship="本人"),
        "身份证号": ex(insured_id_number=WEI["insured_id_number"]),
        "前天晚上": ex(incident_date="2026-03-17"),
        "出了意外，软组织挫伤": ex(incident_type="意外", diagnosis="软组织挫伤"),
        "在深圳市人民医院": ex(hospital="深圳市人民医院"),
        "对": ex(affirm=True),
    }
    d, fake = dialogue(script, RecordIndex([record()]))
    first = d.start()
    assert first[0].slot == "reporter_name" and first[0].text.startswith(FLOW.greeting)
    asked = []
    for text in script:
        actions = d.on_text(text)
        asked.append(prompts(actions)[0].slot if prompts(actions) else None)
    assert asked == ["insured_id_number", "incident_date", "incident_type", "hospital", "confirm", None]
    assert d.finished and d.turns == 6
    report, closing, hangup = actions
    assert isinstance(report, Report) and report.status == "complete"
    assert report.slots == WEI
    assert report.policy_number == "P1"
    assert report.details["reporter_phone"].source == "record"  # the phone on the caller's own policy
    assert report.details["insured_name"].source == "record"
    assert report.details["incident_date"].turn == 3 and report.details["incident_date"].source == "text"  # typed: on_text without a confidence
    assert closing.slot is None and "再见" in closing.text
    assert hangup == Hangup("completed")
    # the extractor is told what was asked
    assert [slot for _, slot in fake.seen] == ["reporter_name", "insured_id_number", "incident_date",
                                                "incident_type", "hospital", "confirm"]


def test_happy_path_without_records_asks_everything_once() -> None:
    script = {
        "李明": ex(reporter_name="李明"),
        "身份证": ex(insured_id_number="11010119800101001X"),
        "我爸": ex(relationship="父母"),
        "李建国": ex(insured_name="李建国"),
        "电话": ex(reporter_phone="13812345678"),
        "昨天": ex(incident_date="2026-03-18"),
        "住院了肺炎": ex(incident_type="住院", diagnosis="肺炎"),
        "华西医院": ex(hospital="华西医院"),
        "对的": ex(affirm=True),
    }
    d, _ = dialogue(script, caller=None)
    actions = play(d, list(script))
    assert d.finished and d.turns == 9
    report = actions[-3]
    assert isinstance(report, Report) and report.status == "complete"
    assert report.slots["reporter_phone"] == "13812345678"
    # read-back: all slots, ID and phone in digit groups with 幺
    readback = [p for p in prompts(actions) if p.slot == "confirm"][0].text
    assert "幺幺零 幺零幺 幺九八零 零幺零幺 零零幺叉" in readback
    assert "幺三八 幺二三四 五六七八" in readback
    assert "出险人是您的父亲或母亲" in readback and "李建国" in readback and "肺炎" in readback


def test_mixed_initiative_fills_whatever_is_said_and_asks_only_the_rest() -> None:
    opening = "你好，我要报案，我爸沈小红昨天出了车祸，脑震荡，在上海瑞金医院"
    script = {
        opening: ex(relationship="父母", insured_name="沈小红", incident_date="2026-03-18",
                    incident_type="意外", diagnosis="脑震荡", hospital="上海瑞金医院"),
        "我叫沈明": ex(reporter_name="沈明"),
        "身份证": ex(insured_id_number="11010119800101001X"),
        "对": ex(affirm=True),
    }
    d, _ = dialogue(script)
    actions = play(d, list(script))
    asked = [p.slot for p in prompts(actions)]
    # nothing already said is asked; the phone is defaulted to the caller's number
    assert asked == ["reporter_name", "reporter_name", "insured_id_number", "confirm", None]
    assert d.turns == 4
    report = actions[-3]
    assert report.slots["reporter_phone"] == CALLER and report.details["reporter_phone"].source == "caller_id"
    readback = prompts(actions)[-2].text
    assert "联系电话用您的来电号码幺六零 六六九零 七四三九" in readback


def test_side_remark_does_not_override_a_given_value_but_fills_an_empty_one() -> None:
    script = {
        "李明": ex(reporter_name="李明"),
        "身份证": ex(insured_id_number="11010119800101001X", reporter_name="李铭", incident_date="2026-03-18"),
    }
    d, _ = dialogue(script)
    play(d, list(script))
    assert d.slots["reporter_name"] == "李明"
    assert d.slots["incident_date"] == "2026-03-18"


# ---------------------------------------------------------------- validation, counters, keypad


def test_validation_problem_gives_the_specific_reprompt() -> None:
    script = {
        "李明": ex(reporter_name="李明"),
        "坏身份证": ex(problems={"insured_id_number": "id_checksum"}),
        "坏电话": ex(problems={"reporter_phone": "phone_format"}),
        "好身份证": ex(insured_id_number="11010119800101001X"),
    }
    d, _ = dialogue(script, caller=None)
    d.start()
    d.on_text("李明")
    p = last_prompt(d.on_text("坏身份证"))
    assert p.slot == "insured_id_number" and p.text == FLOW.slot("insured_id_number").problems["id_checksum"]
    # a problem with another slot while the asked one is answered: that slot is asked next
    script["好身份证加坏电话"] = ex(insured_id_number="11010119800101001X", problems={"reporter_phone": "phone_format"})
    p = last_prompt(d.on_text("好身份证加坏电话"))
    assert p.slot == "reporter_phone" and FLOW.slot("reporter_phone").problems["phone_format"] in p.text


def test_no_match_then_keypad_then_transfer_with_partial_report() -> None:
    script = {"李明": ex(reporter_name="李明")}
    d, _ = dialogue(script)
    d.start()
    d.on_text("李明")
    spec = FLOW.slot("insured_id_number")
    seen = []
    for i in range(spec.limits.no_match):
        actions = d.on_text("嗯……")
        check_protocol(actions)
        seen.append(actions)
    first, second = last_prompt(seen[0]), last_prompt(seen[1])
    assert first.slot == "insured_id_number" and not first.dtmf
    assert first.text.startswith(FLOW.no_match_prefix[0])
    assert second.dtmf and spec.dtmf.prompt in second.text  # offered after dtmf.after failures
    final = seen[-1]
    assert isinstance(final[0], Report) and final[0].status == "transferred"
    assert final[0].slots == {"reporter_name": "李明"}
    assert final[-1] == Transfer("no_match") and d.finished
    assert d.on_text("还在吗") == []


def test_no_input_escalates_to_transfer() -> None:
    d, _ = dialogue({})
    first = d.start()[0]
    a = d.on_no_input()
    assert last_prompt(a).slot == "reporter_name" and last_prompt(a).text.startswith(FLOW.no_input_prefix[0])
    d.on_no_input()
    actions = d.on_no_input()
    assert actions[-1] == Transfer("no_input")
    assert not any(isinstance(x, Report) for x in actions)  # nothing filled: no report
    assert first.slot == "reporter_name"


def test_keypad_entry_one_key_per_event_with_star_for_x() -> None:
    keyed = "11010119800101001*"
    script = {
        "李明": ex(reporter_name="李明"),
        "11010119800101001X": ex(insured_id_number="11010119800101001X"),
    }
    d, fake = dialogue(script)
    d.start()
    d.on_text("李明")
    d.on_text("嗯")
    p = last_prompt(d.on_text("啊"))
    assert p.dtmf
    for key in keyed[:-1]:
        assert d.on_dtmf(key) == []
    actions = d.on_dtmf(keyed[-1])  # max_length 18 ends the entry without '#'
    assert fake.seen[-1] == ("11010119800101001X", "insured_id_number")
    assert d.slots["insured_id_number"] == "11010119800101001X"
    assert last_prompt(actions).slot == "insured_name"
    d.on_text("我爸")  # not scripted → a no-match; keypad is ignored for a non-digit question
    assert d.on_dtmf("5#") == []


def test_keypad_phone_ends_with_hash_and_confirm_keys() -> None:
    script = {
        "open": ex(reporter_name="李明", relationship="本人", insured_id_number="11010119800101001X",
                   incident_date="2026-03-18", incident_type="门诊", hospital="协和医院", diagnosis="胃炎"),
        "13812345678": ex(reporter_phone="13812345678"),
    }
    d, _ = dialogue(script, caller=None)  # no caller number: the phone must be asked
    d.start()
    p = last_prompt(d.on_text("open"))
    assert p.slot == "reporter_phone"
    d.on_text("啊")
    p = last_prompt(d.on_text("啊"))
    assert p.dtmf and p.slot == "reporter_phone"
    assert d.on_dtmf("1381234") == []
    p = last_prompt(d.on_dtmf("5678#"))
    assert p.slot == "confirm" and p.dtmf
    assert d.slots["reporter_phone"] == "13812345678"
    actions = d.on_dtmf("1")
    assert isinstance(actions[0], Report) and actions[0].status == "complete"
    assert actions[0].details["reporter_phone"].source == "dtmf"


def test_keyed_digits_without_hash_are_taken_at_the_silence_timeout() -> None:
    script = {"李明": ex(reporter_name="李明"), "110": ex(problems={"insured_id_number": "id_length"})}
    d, fake = dialogue(script)
    d.start()
    d.on_text("李明")
    d.on_text("嗯")
    d.on_text("嗯")
    d.on_dtmf("110")
    p = last_prompt(d.on_no_input())
    assert fake.seen[-1] == ("110", "insured_id_number")
    assert p.slot == "insured_id_number" and p.dtmf


# ---------------------------------------------------------------- confirmation


BASE_SCRIPT = {
    "open": ex(reporter_name="谢晓明", relationship="子女", insured_name="谢金凤",
               insured_id_number="310115201102157978", incident_date="2026-04-22",
               incident_type="意外", hospital="省立医院", diagnosis="烧伤"),
    "对": ex(affirm=True),
}


def at_confirm(script: dict[str, Extraction], caller: str | None = CALLER) -> Dialogue:
    d, _ = dialogue({**BASE_SCRIPT, **script}, caller=caller)
    d.start()
    p = last_prompt(d.on_text("open"))
    assert p.slot == "confirm"
    return d


def test_correction_at_confirm_overwrites_and_reads_back_the_change() -> None:
    d = at_confirm({"不对，我的手机号是幺九二二八三零三八八三": ex(affirm=False, correction=True,
                                                   reporter_phone="19228303883")})
    assert d.slots["reporter_phone"] == CALLER
    p = last_prompt(d.on_text("不对，我的手机号是幺九二二八三零三八八三"))
    assert p.slot == "confirm" and p.slots["reporter_phone"] == "19228303883"
    assert "幺九二 二八三零 三八八三" in p.text and "谢金凤" not in p.text  # only the change is read back
    actions = d.on_text("对")
    assert actions[0].slots["reporter_phone"] == "19228303883"
    assert actions[0].details["reporter_phone"].source == "text"


def test_bare_negation_asks_which_part_and_a_named_part_is_asked_again() -> None:
    d = at_confirm({
        "不对": ex(affirm=False),
        "医院不对": ex(affirm=False),
        "是山东省立医院": ex(hospital="山东省立医院"),
    })
    p = last_prompt(d.on_text("不对"))
    assert p.slot == "confirm" and p.text == FLOW.confirm.which
    p = last_prompt(d.on_text("医院不对"))
    assert p.slot == "hospital"
    p = last_prompt(d.on_text("是山东省立医院"))
    assert p.slot == "confirm" and "山东省立医院" in p.text
    assert d.on_text("对")[0].slots["hospital"] == "山东省立医院"


def test_when_the_read_back_and_which_both_fail_items_are_confirmed_one_by_one() -> None:
    d = at_confirm({
        "不对": ex(affirm=False),
        "反正有地方不对": ex(affirm=False),  # names no item: asking "which" again would fail again
        "是的": ex(affirm=True),
        "这个不对": ex(affirm=False),
        "山东省立医院": ex(hospital="山东省立医院"),
    })
    assert last_prompt(d.on_text("不对")).text == FLOW.confirm.which
    p = last_prompt(d.on_text("反正有地方不对"))
    assert p.slot == "reporter_name" and p.text == "我们一项一项确认：报案人谢晓明，对吗？"
    asked = [p.slot]
    for _ in range(6):  # relationship, insured name, ID number, phone, date, type: all right
        p = last_prompt(d.on_text("是的"))
        asked.append(p.slot)
    assert asked == ["reporter_name", "relationship", "insured_name", "insured_id_number", "reporter_phone",
                     "incident_date", "incident_type"]
    p = last_prompt(d.on_text("是的"))
    assert p.slot == "hospital" and "省立医院" in p.text and p.text != FLOW.confirm.which
    p = last_prompt(d.on_text("这个不对"))  # that item is asked alone
    assert p.slot == "hospital" and "对吗" not in p.text
    p = last_prompt(d.on_text("山东省立医院"))
    assert p.slot == "diagnosis" and "烧伤" in p.text  # then the items go on where they were
    actions = d.on_text("是的")
    assert actions[0].status == "complete" and actions[0].slots["hospital"] == "山东省立医院"
    assert actions[-1] == Hangup("completed")


def test_a_correction_that_repeats_the_read_back_is_never_answered_the_same_way_a_third_time() -> None:
    # "不对，是我女儿" when the read-back said 子女: that part is read back once; said again, the
    # caller is asked which item is wrong; said again, the items are confirmed one by one
    d = at_confirm({"不对，是我女儿": ex(affirm=False, correction=True, relationship="子女")})
    texts = []
    for _ in range(3):
        p = last_prompt(d.on_text("不对，是我女儿"))
        texts.append(p.text)
    assert texts[0] == "好的，出险人是您的子女。其他信息都对吗？"
    assert texts[1] == FLOW.confirm.which
    assert texts[2] == "我们一项一项确认：报案人谢晓明，对吗？"
    assert not d.finished


def test_a_greeting_alone_is_acknowledged_and_costs_no_try() -> None:
    d, _ = dialogue({"李明": ex(reporter_name="李明")})
    first = last_prompt(d.start())
    p = last_prompt(d.on_text("喂，你好，我要报案"))
    assert p.slot == "reporter_name" and p.text == FLOW.ack + FLOW.slot("reporter_name").prompts[0]
    p = last_prompt(d.on_text("我 想 报 个案"))  # the recognizer's spacing, a second greeting
    assert p.text == FLOW.ack + FLOW.slot("reporter_name").prompts[0] and p.text != first.text
    # the first answer we cannot place is the name's first failure, not its third
    p = last_prompt(d.on_text("这个怎么说呢"))
    assert p.slot == "reporter_name" and p.text.startswith(FLOW.no_match_prefix[0]) and not d.finished
    p = last_prompt(d.on_text("李明"))
    assert p.slot == "insured_id_number"
    # once anything is filled, a greeting is no answer to the question asked
    p = last_prompt(d.on_text("你好"))
    assert p.slot == "insured_id_number" and p.text.startswith(FLOW.no_match_prefix[0])


def test_an_item_answered_with_a_new_value_takes_it_and_goes_on() -> None:
    d = at_confirm({"不对": ex(affirm=False), "嗯？": Extraction(), "谢晓鸣": ex(reporter_name="谢晓鸣")})
    d.on_text("不对")
    p = last_prompt(d.on_text("不对"))
    assert p.slot == "reporter_name"
    p = last_prompt(d.on_text("谢晓鸣"))
    assert p.slot == "relationship" and p.slots["reporter_name"] == "谢晓鸣"


def test_bare_name_correction_goes_to_the_name_it_resembles() -> None:
    # the extractor cannot know which name "不对，谢金风" corrects; it guessed reporter_name
    d = at_confirm({"不对，谢金风": ex(affirm=False, correction=True, reporter_name="谢金风")})
    p = last_prompt(d.on_text("不对，谢金风"))
    assert p.slots["reporter_name"] == "谢晓明" and p.slots["insured_name"] == "谢金风"


def test_correction_of_relationship_to_self_derives_the_insured_name() -> None:
    d = at_confirm({"不对，是我自己": ex(affirm=False, correction=True, relationship="本人")})
    p = last_prompt(d.on_text("不对，是我自己"))
    assert p.slot == "confirm"
    assert p.slots["relationship"] == "本人" and p.slots["insured_name"] == "谢晓明"


def test_unclear_answers_at_confirm_end_in_transfer() -> None:
    # the read-back again, then the yes or no alone, then the first item alone (twice at most):
    # never the same question a third time, then a person
    d = at_confirm({})
    p = last_prompt(d.on_text("嗯？"))
    assert p.slot == "confirm" and "核对一下" in p.text
    p = last_prompt(d.on_text("嗯？"))
    assert p.slot == "confirm" and p.text.endswith(FLOW.confirm.yes_no) and p.dtmf
    for _ in range(2):
        p = last_prompt(d.on_text("嗯？"))
        assert p.slot == "reporter_name" and p.text.startswith("我们一项一项确认")
    actions = d.on_text("嗯？")
    assert actions[0].status == "transferred" and actions[-1] == Transfer("no_match")


def test_invalid_correction_at_confirm_asks_that_slot_with_its_reprompt() -> None:
    d = at_confirm({
        "不对，身份证号是…": ex(affirm=False, correction=True, problems={"insured_id_number": "id_checksum"}),
        "310115201102157978": ex(insured_id_number="310115201102157978"),
    })
    p = last_prompt(d.on_text("不对，身份证号是…"))
    assert p.slot == "insured_id_number" and p.text == FLOW.slot("insured_id_number").problems["id_checksum"]
    p = last_prompt(d.on_text("310115201102157978"))
    assert p.slot == "confirm"


def test_closing_wording_depends_on_the_incident() -> None:
    d = at_confirm({"不对，是身故": ex(affirm=False, correction=True, incident_type="身故")})
    d.on_text("不对，是身故")
    closing = prompts(d.on_text("对"))[0]
    assert "节哀" in closing.text


# ---------------------------------------------------------------- endings


def test_hangup_midway_emits_the_partial_report() -> None:
    d, _ = dialogue({"李明": ex(reporter_name="李明")})
    d.start()
    d.on_text("李明")
    actions = d.on_hangup()
    assert len(actions) == 1 and actions[0].status == "partial"
    assert actions[0].slots == {"reporter_name": "李明"}
    assert d.finished and d.on_hangup() == [] and d.on_text("李明") == []


def test_hangup_before_anything_said_emits_nothing() -> None:
    d, _ = dialogue({})
    d.start()
    assert d.on_hangup() == []


def test_wants_human_transfers_with_the_partial_report() -> None:
    d, _ = dialogue({"李明": ex(reporter_name="李明"), "转人工": ex(wants_human=True)})
    d.start()
    d.on_text("李明")
    actions = d.on_text("转人工")
    check_protocol(actions)
    assert [type(a) for a in actions] == [Report, Prompt, Transfer]
    assert actions[0].status == "transferred" and actions[-1] == Transfer("caller_request")
    assert actions[1].text == FLOW.transfer[0].text


def test_wants_human_at_once_has_no_report() -> None:
    d, _ = dialogue({"人工": ex(wants_human=True)})
    d.start()
    assert [type(a) for a in d.on_text("人工")] == [Prompt, Transfer]


def test_never_more_than_max_turns() -> None:
    # the caller keeps changing the phone at the read-back: always progress, never finished
    d = at_confirm({"不对，电话是A": ex(affirm=False, correction=True, reporter_phone="13800000001"),
                    "不对，电话是B": ex(affirm=False, correction=True, reporter_phone="13800000002")})
    for i in range(40):
        actions = d.on_text("不对，电话是A" if i % 2 else "不对，电话是B")
        check_protocol(actions)
        if d.finished:
            break
    assert actions[0].status == "transferred" and actions[-1] == Transfer("too_many_turns")
    assert d.turns + 1 == FLOW.max_turns  # its answers plus the transfer prompt


def test_silences_count_toward_the_turn_budget() -> None:
    d = at_confirm({"不对，电话是A": ex(affirm=False, correction=True, reporter_phone="13800000001"),
                    "不对，电话是B": ex(affirm=False, correction=True, reporter_phone="13800000002")})
    prompts_heard = 2  # the first question and the read-back
    for i in range(40):
        actions = d.on_no_input() if i % 5 == 4 else d.on_text("不对，电话是A" if i % 2 else "不对，电话是B")
        prompts_heard += len(prompts(actions))
        if d.finished:
            break
    # out of turns while the phone the caller keeps correcting is being repaired: the call ends with
    # the report stored and the phone marked unconfirmed (`confirm.unresolved`), not with an agent
    assert actions[-1] == Hangup("completed")
    report = next(a for a in actions if isinstance(a, Report))
    assert report.details["reporter_phone"].confirmed is False
    assert prompts_heard == FLOW.max_turns  # every prompt, the last (closing) one included, as simcaller counts


# ---------------------------------------------------------------- derived, caller id, records


def test_self_derives_insured_name_and_never_asks_it() -> None:
    script = {
        "我叫李明，给我自己报": ex(reporter_name="李明", relationship="本人"),
    }
    d, _ = dialogue(script, caller=None)
    d.start()
    p = last_prompt(d.on_text("我叫李明，给我自己报"))
    assert d.slots["insured_name"] == "李明"
    assert p.slot == "insured_id_number" and p.text.endswith(FLOW.slot("insured_id_number").prompts_when[0].prompts[0])
    report = d.on_hangup()[0]
    assert report.details["insured_name"].source == "derived"


def test_insured_asked_before_relationship_and_own_name_means_self() -> None:
    script = {
        "李明": ex(reporter_name="李明"),
        "身份证": ex(insured_id_number="11010119800101001X"),
        "李明本人": ex(insured_name="李明"),
    }
    d, _ = dialogue(script)
    d.start()
    d.on_text("李明")
    assert last_prompt(d.on_text("身份证")).slot == "insured_name"  # "我爸叫李建国" would give both
    p = last_prompt(d.on_text("李明本人"))
    assert p.slot == "incident_date" and d.slots["relationship"] == "本人"
    report = d.on_hangup()[0]
    assert report.details["relationship"].source == "derived" and report.details["relationship"].turn == 3


def test_a_said_relationship_is_not_overridden_by_equal_names() -> None:
    script = {
        "open": ex(reporter_name="李明", relationship="父母"),
        "身份证": ex(insured_id_number="11010119800101001X"),
        "李明": ex(insured_name="李明"),
    }
    d, _ = dialogue(script)
    play(d, list(script))
    assert d.slots["relationship"] == "父母" and d.slots["insured_name"] == "李明"


def test_use_caller_number() -> None:
    script = {
        "open": ex(reporter_name="李明", relationship="本人", insured_id_number="11010119800101001X",
                   incident_date="2026-03-18", incident_type="门诊", hospital="协和医院", diagnosis="胃炎"),
        "就用这个号码": ex(use_caller_number=True),
        "对": ex(affirm=True),
    }
    d, _ = dialogue(script, caller="+86 160 6690 7439")
    d.start()
    d.on_text("open")
    p = last_prompt(d.on_text("就用这个号码"))  # at the read-back: an explicit choice now
    assert p.slots["reporter_phone"] == CALLER and p.slot == "confirm"
    assert p.text.startswith("好的，联系电话用您的来电号码幺六零 六六九零 七四三九")
    assert d.on_text("对")[0].details["reporter_phone"].source == "caller_id"


def test_caller_number_when_asked() -> None:
    script = {
        "open": ex(reporter_name="李明", relationship="本人", insured_id_number="11010119800101001X",
                   incident_date="2026-03-18", incident_type="门诊", hospital="协和医院", diagnosis="胃炎"),
        "就用这个号码": ex(use_caller_number=True),
    }
    flow = dataclasses.replace(FLOW, slots=tuple(
        dataclasses.replace(s, default=None) if s.name == "reporter_phone" else s for s in FLOW.slots))
    d, _ = dialogue(script, flow=flow)
    d.start()
    assert last_prompt(d.on_text("open")).slot == "reporter_phone"
    p = last_prompt(d.on_text("就用这个号码"))
    assert p.slot == "confirm" and p.slots["reporter_phone"] == CALLER


def test_record_corrects_a_misrecognized_id_and_name_and_is_named_in_the_readback() -> None:
    index = RecordIndex([
        record(insured_name="韩慧", holder_name="韩强", insured_id_number="110101195705157707", phone="13900001111"),
        record(policy_number="P2", insured_name="别人", insured_id_number="110101195705157717", phone="13900002222"),
    ])
    script = {
        "open": ex(reporter_name="韩强", relationship="子女", insured_name="韩惠"),
        # one digit misrecognized; the name (as heard) does not agree, but the index has the holder
        "身份证": ex(insured_id_number="110101195705157706"),
        "对": ex(affirm=True),
    }
    d, _ = dialogue(script, index)
    d.start()
    d.on_text("open")
    d.on_text("身份证")
    assert d.record is not None and d.record.policy_number == "P1"
    assert d.slots["insured_name"] == "韩慧" and d.slots["insured_id_number"] == "110101195705157707"
    for text, value in (("昨天", "2026-03-18"), ("住院", "住院"), ("医院", "协和医院"), ("诊断", "肺炎")):
        d._extractor.script[text] = ex(**{  # type: ignore[attr-defined]
            {"昨天": "incident_date", "住院": "incident_type", "医院": "hospital", "诊断": "diagnosis"}[text]: value})
        p = last_prompt(d.on_text(text))
    assert p.slot == "confirm"
    assert "姓名韩慧，身份证尾号七七零七" in p.text
    report = d.on_text("对")[0]
    assert report.details["insured_name"].source == "record" and report.policy_number == "P1"


def test_record_self_match_sets_relationship_and_suggests_the_phone() -> None:
    d, _ = dialogue({"韦文博": ex(reporter_name="韦文博"),
                     "身份证": ex(insured_id_number="330106199011130961")}, RecordIndex([record()]))
    d.start()
    d.on_text("韦文博")
    p = last_prompt(d.on_text("身份证"))
    assert p.slot == "incident_date"  # relationship, insured name and phone all from the record
    assert d.slots["relationship"] == "本人" and d.slots["reporter_phone"] == "18000806360"


def test_record_phone_suggestion_is_withdrawn_when_the_caller_is_not_the_insured() -> None:
    d, _ = dialogue({"韦文博": ex(reporter_name="韦文博"),
                     "身份证": ex(insured_id_number="330106199011130961"),
                     "不对，是我爸": ex(affirm=False, correction=True, relationship="父母")},
                    RecordIndex([record()]), caller=None)
    d.start()
    d.on_text("韦文博")
    d.on_text("身份证")
    assert d.slots["reporter_phone"] == "18000806360"
    d._phase = "confirm"  # jump to the read-back for brevity
    p = last_prompt(d.on_text("不对，是我爸"))
    assert d.slots["relationship"] == "父母" and "reporter_phone" not in d.slots
    assert p.slot == "reporter_phone"


HOLDER_PHONE_FLOW = dataclasses.replace(FLOW, records=dataclasses.replace(
    FLOW.records, holder_rule=dataclasses.replace(FLOW.records.holder_rule, suggest={"reporter_phone": "phone"})))
SON = dict(insured_name="韦小明", holder_name="韦文博", insured_id_number="110101201005157703", phone="13900001111")


def test_the_shipped_holder_rule_suggests_nothing_the_records_phone_is_the_insureds() -> None:
    d, _ = dialogue({"韦文博": ex(reporter_name="韦文博"), "身份证": ex(insured_id_number=SON["insured_id_number"])},
                    RecordIndex([record(**SON)]))
    d.start()
    d.on_text("韦文博")
    d.on_text("身份证")
    assert d.slots["insured_name"] == "韦小明" and "reporter_phone" not in d.slots  # the calling number, at the read-back


def test_a_holder_rule_with_suggest_fills_from_the_record_for_the_holder_reporting_for_another() -> None:
    # a flow whose records' phone is the holder's: a mother, the policy holder, reports for her son
    d, _ = dialogue({"韦文博": ex(reporter_name="韦文博"),
                     "身份证": ex(insured_id_number=SON["insured_id_number"]),
                     "我儿子": ex(relationship="子女")}, RecordIndex([record(**SON)]), flow=HOLDER_PHONE_FLOW)
    d.start()
    d.on_text("韦文博")
    p = last_prompt(d.on_text("身份证"))
    assert p.slot == "relationship"  # the record is someone else's: not 本人
    assert d.slots["reporter_phone"] == "13900001111" and d.slots["insured_name"] == "韦小明"
    d.on_text("我儿子")
    assert d.slots["reporter_phone"] == "13900001111"


def test_record_holder_rule_needs_the_callers_name_to_be_the_holders() -> None:
    d, _ = dialogue({"韦建国": ex(reporter_name="韦建国"),
                     "身份证": ex(insured_id_number=SON["insured_id_number"])}, RecordIndex([record(**SON)]),
                    flow=HOLDER_PHONE_FLOW)
    d.start()
    d.on_text("韦建国")
    d.on_text("身份证")
    assert d.record is not None and "reporter_phone" not in d.slots  # the calling number, at the read-back


def test_record_holder_suggestion_is_withdrawn_when_the_caller_corrects_their_name() -> None:
    d, _ = dialogue({"韦文博": ex(reporter_name="韦文博"),
                     "身份证": ex(insured_id_number=SON["insured_id_number"]),
                     "不对，我叫韦建国": ex(affirm=False, correction=True, reporter_name="韦建国")},
                    RecordIndex([record(**SON)]), flow=HOLDER_PHONE_FLOW)
    d.start()
    d.on_text("韦文博")
    d.on_text("身份证")
    assert d.slots["reporter_phone"] == "13900001111"
    d._phase = "confirm"  # jump to the read-back for brevity
    d.on_text("不对，我叫韦建国")
    assert d.slots["reporter_name"] == "韦建国" and d.slots.get("reporter_phone") != "13900001111"


def test_a_phone_alone_needs_the_name_to_agree() -> None:
    index = RecordIndex([record(insured_name="韦父", holder_name="韦文博", insured_id_number="110101195705157707")])
    d, _ = dialogue({"open": ex(reporter_name="韦文博", relationship="父母", insured_name="韦明",
                                reporter_phone="18000806360")}, index)
    d.start()
    d.on_text("open")
    assert d.record is None and "insured_id_number" not in d.slots


def test_confidence_is_the_lower_of_recognition_and_extraction() -> None:
    d, _ = dialogue({"李明": ex(reporter_name="李明", confidence=0.9)})
    d.start()
    d.on_text("李明", confidence=0.6)
    assert d.on_hangup()[0].details["reporter_name"].confidence == pytest.approx(0.6)


def test_a_failing_extractor_counts_as_not_understood() -> None:
    class Broken:
        def extract(self, text: str, context: CallContext) -> Extraction:
            raise RuntimeError("boom")

    d = Dialogue(FLOW, Broken(), context())
    d.start()
    p = last_prompt(d.on_text("我叫李明"))
    assert p.slot == "reporter_name" and p.text.startswith(FLOW.no_match_prefix[0])


def test_events_before_start_and_after_the_end_do_nothing() -> None:
    d, _ = dialogue({"人工": ex(wants_human=True)})
    assert d.on_text("人工") == [] and d.on_dtmf("1") == [] and d.on_no_input() == []
    d.start()
    assert d.start() == []
    d.on_text("人工")
    assert d.finished and d.on_no_input() == [] and d.on_dtmf("1#") == []
