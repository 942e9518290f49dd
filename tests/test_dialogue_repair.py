"""Repair strategies of the claim flow, with text turns: a name no policy record confirms read
back by its surname's spelling (voice), a spelled correction, and the narrower question (the
surname spelled, the keypad, a choice list) once a repair failed; never the same question the
same way a third time.

Voice is simulated by passing the recognizer's confidence with the text (`on_text(t, 0.9)`):
the engine then treats the caller as speaking. The flow is bound to its kinds and read by the
real claim reader, as the gateway runs it.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

from speech.dialogue.actions import Hangup, Prompt
from speech.dialogue.binding import bind
from speech.dialogue.engine import Dialogue
from speech.dialogue.flow import load_flow
from speech.dialogue.records import PolicyRecord, RecordIndex
from speech.understanding.kinds import KindRegistry
from speech.understanding.types import CallContext

ROOT = Path(__file__).resolve().parents[1]
CST = timezone(timedelta(hours=8))
CALLER = "16066907439"
VOICE = 0.9  # a recognizer's confidence: the caller speaks


@lru_cache(maxsize=1)
def bound():
    return bind(load_flow(ROOT / "config" / "flows" / "claim_report.yaml"), KindRegistry.from_config(ROOT / "config"))


def id_number(body: str) -> str:
    """`body` (17 digits) with its GB 11643 check digit."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]


ZHANG_ID = id_number("11010119900307457")
SPOKEN_ID = "".join("零幺二三四五六七八九"[int(c)] if c.isdigit() else "叉" for c in ZHANG_ID)

# A caller reporting for themself, said slot by slot (the answers to each question)
ANSWERS = {
    "reporter_name": "我叫张伟",
    "insured_id_number": f"身份证号是{SPOKEN_ID}",
    "relationship": "我自己",
    "insured_name": "我自己",
    "reporter_phone": "幺三八 一二三四 五六七八",
    "incident_date": "昨天",
    "incident_type": "我骑车摔了，左腿骨折",
    "hospital": "华西医院",
    "diagnosis": "左腿骨折",
}


def dialogue(records: RecordIndex | None = None) -> Dialogue:
    flow, reader = bound()
    return Dialogue(flow, reader, CallContext(started_at=datetime(2026, 3, 19, 10, 16, tzinfo=CST),
                                              caller_number=CALLER), records)


def last_prompt(actions) -> Prompt:
    found = [a for a in actions if isinstance(a, Prompt)]
    assert found, actions
    return found[-1]


def answer_until(d: Dialogue, stop, confidence: float | None = VOICE, limit: int = 14) -> Prompt:
    """Answer each question from ANSWERS until a prompt `stop` accepts; that prompt."""
    p = last_prompt(d.start())
    for _ in range(limit):
        if stop(p):
            return p
        assert p.slot in ANSWERS, p
        p = last_prompt(d.on_text(ANSWERS[p.slot], confidence))
    raise AssertionError(f"never reached: last prompt {p}")


def is_spelling(p: Prompt) -> bool:
    return p.slot == "reporter_name" and "弓长张" in p.text


def test_by_voice_a_name_no_record_confirms_is_read_back_by_its_spelling_and_a_yes_keeps_it() -> None:
    d = dialogue()
    p = answer_until(d, lambda p: is_spelling(p) or p.slot == "confirm")
    assert p.text == "好的，您姓张，弓长张，对吗？" and p.slot == "reporter_name"
    p = last_prompt(d.on_text("对", VOICE))
    assert p.slot == "confirm" and "报案人张伟" in p.text
    actions = d.on_text("对的", VOICE)
    assert actions[0].status == "complete" and actions[0].slots["reporter_name"] == "张伟"


def test_a_spelled_correction_replaces_the_surname_and_keeps_the_given_name() -> None:
    for said in ("不是，是立早章", "文章的章", "不对，立早章的章"):
        d = dialogue()
        answer_until(d, is_spelling)
        p = last_prompt(d.on_text(said, VOICE))
        assert p.slot == "confirm", (said, p)
        assert p.slots["reporter_name"] == "章伟" and p.slots["insured_name"] == "章伟", said
        assert "报案人章伟" in p.text


def test_a_bare_no_asks_for_the_spelling_once_and_never_a_third_time() -> None:
    d = dialogue()
    answer_until(d, is_spelling)
    p = last_prompt(d.on_text("不对", VOICE))
    assert p.slot == "reporter_name" and "哪个字" in p.text and "弓长张" in p.text
    p = last_prompt(d.on_text("不对", VOICE))  # still no: the whole read-back, not a third spelling ask
    assert p.slot == "confirm" and "哪个字" not in p.text and "对吗" in p.text


def test_the_spelling_asked_after_a_no_takes_the_spelled_surname() -> None:
    d = dialogue()
    answer_until(d, is_spelling)
    d.on_text("不对", VOICE)
    p = last_prompt(d.on_text("耳东陈", VOICE))
    assert p.slot == "confirm" and p.slots["reporter_name"] == "陈伟"


def test_a_name_said_again_at_the_spelling_check_is_taken() -> None:
    d = dialogue()
    answer_until(d, is_spelling)
    p = last_prompt(d.on_text("我叫张卫", VOICE))
    assert p.slot == "confirm" and p.slots["reporter_name"] == "张卫"


def test_typed_calls_and_names_a_record_confirms_get_no_spelling_check() -> None:
    d = dialogue()  # typed: the letters are what the caller wrote
    p = answer_until(d, lambda p: p.slot == "confirm", confidence=None)
    assert "弓长张" not in p.text
    record = PolicyRecord(policy_number="P1", product="住院医疗", holder_name="张伟", insured_name="张伟",
                          insured_id_number=ZHANG_ID, phone="13812345678",
                          start_date=date(2025, 1, 1), expiry_date=date(2027, 1, 1))
    d = dialogue(RecordIndex([record]))
    spelled = []
    p = answer_until(d, lambda p: spelled.append(is_spelling(p)) or p.slot == "confirm")
    assert not any(spelled) and p.slots["reporter_name"] == "张伟"


def test_a_spelling_check_never_costs_the_call_its_last_turns() -> None:
    d = dialogue()
    answer_until(d, is_spelling)
    flow, reader = bound()
    # turns for the answers so far and the read-back with its answer, none for the spelling check
    tight = dataclasses.replace(flow, max_turns=d.turns + 2)
    d = Dialogue(tight, reader, CallContext(started_at=datetime(2026, 3, 19, 10, 16, tzinfo=CST),
                                            caller_number=CALLER))
    p = answer_until(d, lambda p: is_spelling(p) or p.slot == "confirm")
    assert p.slot == "confirm"
    actions = d.on_text("对", VOICE)
    assert actions[0].status == "complete"


# ------------------------------------------------------------------ narrower questions after a failed repair


def at_read_back(confidence: float | None = None) -> tuple[Dialogue, Prompt]:
    d = dialogue()
    p = answer_until(d, lambda p: p.slot == "confirm", confidence=confidence)
    return d, p


def test_a_type_said_wrong_twice_is_asked_with_a_choice_list() -> None:
    d, _ = at_read_back()
    first = last_prompt(d.on_text("类型不对"))
    assert first.slot == "incident_type"
    p = last_prompt(d.on_text("是生病住院了"))
    assert p.slot == "confirm" and p.slots["incident_type"] == "住院"
    p = last_prompt(d.on_text("类型不对"))
    assert p.slot == "incident_type" and "选一种" in p.text and p.text != first.text
    p = last_prompt(d.on_text("意外"))
    assert p.slot == "confirm" and p.slots["incident_type"] == "意外"


def test_an_id_said_wrong_twice_is_asked_on_the_keypad() -> None:
    d, _ = at_read_back()
    first = last_prompt(d.on_text("身份证不对"))
    assert first.slot == "insured_id_number" and not first.dtmf
    other = id_number("51010719850612301")
    d.on_text(f"身份证号是{other}")
    p = last_prompt(d.on_text("身份证不对"))
    assert p.slot == "insured_id_number" and p.dtmf and "按键" in p.text
    keyed = id_number("11010119900307458")
    p = last_prompt(d.on_dtmf(keyed.replace("X", "*") + ("#" if len(keyed) < 18 else "")))
    assert p.slot == "confirm" and p.slots["insured_id_number"] == keyed


def test_a_phone_said_wrong_twice_is_asked_on_the_keypad() -> None:
    d, _ = at_read_back()
    d.on_text("电话不对")
    d.on_text("幺三九 一二三四 五六七八")
    p = last_prompt(d.on_text("电话不对"))
    assert p.slot == "reporter_phone" and p.dtmf and "按键" in p.text
    p = last_prompt(d.on_dtmf("13700001111#"))
    assert p.slot == "confirm" and p.slots["reporter_phone"] == "13700001111"


def test_by_voice_a_name_misheard_twice_is_asked_with_its_surname_spelled_first() -> None:
    d, p = at_read_back(VOICE)
    if is_spelling(p):
        p = last_prompt(d.on_text("对", VOICE))
    assert p.slot == "confirm"
    first = last_prompt(d.on_text("名字不对", VOICE))
    assert first.slot == "reporter_name" and "全名" in first.text
    p = last_prompt(d.on_text("我叫张卫", VOICE))
    assert p.slot == "confirm" and p.slots["reporter_name"] == "张卫"
    second = last_prompt(d.on_text("名字不对", VOICE))
    assert second.slot == "reporter_name" and "哪个字" in second.text and second.text != first.text
    p = last_prompt(d.on_text("立早章，章卫", VOICE))
    assert p.slot == "confirm" and p.slots["reporter_name"] == "章卫"
    actions = d.on_text("对", VOICE)
    assert actions[0].status == "complete" and actions[-1] == Hangup("completed")


def test_a_name_heard_with_ren_gong_in_it_is_no_request_for_a_person() -> None:
    # 栾光庆 was heard "人 工 庆" and the call went to an agent at its second question
    flow, reader = bound()
    context = CallContext(started_at=datetime(2026, 3, 19, 10, 16, tzinfo=CST), caller_number=CALLER,
                          expected_slot="reporter_name", recognized=True)
    assert not reader.extract("人 工 庆", context).wants_human
    for said in ("人工", "转人工", "我要人工", "人工吧", "找个真人"):
        assert reader.extract(said, context).wants_human, said


def test_by_voice_a_no_that_repeats_what_was_read_back_asks_that_item_again_never_the_same_read_back() -> None:
    # "不是，脑出血人没了" heard as "不是脑出血也没问": the same type and diagnosis again, not a fix;
    # reading them back again and again until a transfer is the failure this guards against
    d, p = at_read_back(VOICE)
    if is_spelling(p):
        p = last_prompt(d.on_text("对", VOICE))
    assert p.slot == "confirm"
    said = f"不是，{ANSWERS['incident_type']}"
    first = last_prompt(d.on_text(said, VOICE))
    assert first.slot == "incident_type", first
    p = last_prompt(d.on_text(ANSWERS["incident_type"], VOICE))
    assert p.slot == "confirm"
    second = last_prompt(d.on_text(said, VOICE))
    assert second.slot == "incident_type" and "选一种" in second.text and second.text != first.text
    p = last_prompt(d.on_text("身故", VOICE))
    assert p.slot == "confirm" and p.slots["incident_type"] == "身故"


def test_typed_a_correction_that_repeats_the_value_gets_the_recheck_then_the_narrower_question() -> None:
    # "不是，在武汉市中医院" typed again and again while we read it as another hospital: the same
    # read-back a third time is what this guards against
    d, p = at_read_back()
    said = f"不是，在{ANSWERS['hospital']}"
    first = last_prompt(d.on_text(said))
    assert first.slot == "hospital"
    p = last_prompt(d.on_text(ANSWERS["hospital"]))
    assert p.slot == "confirm"
    second = last_prompt(d.on_text(said))
    assert second.slot == "hospital" and "全名" in second.text and second.text != first.text
