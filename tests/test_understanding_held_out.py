"""Ways of saying a slot that two held-out caller populations used and the bot missed (issue 13,
2026-12-07): written blind by people who never read the rules, one chatting, one speaking. Each
case is a kind of phrasing (chat words for yes, a self-correction inside an answer, a name told
character by character), not one caller's words; and the dialogue's answers to what it cannot place."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from speech.dialogue.actions import Prompt
from speech.dialogue.binding import load_bound_flows
from speech.dialogue.engine import Dialogue
from speech.understanding.claims import ClaimReader
from speech.understanding.types import CallContext

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 30, 10, 0, tzinfo=timezone(timedelta(hours=8)))  # a Monday


@pytest.fixture(scope="module")
def reader() -> ClaimReader:
    return ClaimReader.from_config(ROOT / "config")


def read(reader: ClaimReader, text: str, slot: str | None) -> dict[str, str]:
    found = reader.extract(text, CallContext(started_at=NOW, caller_number="15400000000", expected_slot=slot))
    return {k: v.value for k, v in found.values.items()}


@pytest.mark.parametrize("text", ["木有错", "ok没问题", "OK", "对滴~", "是滴", "好哒", "对 就是 这样", "没毛病", "嗯嗯对"])
def test_yes_as_typed_in_a_chat_or_said_in_regional_speech(reader: ClaimReader, text: str) -> None:
    ctx = CallContext(started_at=NOW, expected_slot="confirm")
    assert reader.extract(text, ctx).affirm is True


@pytest.mark.parametrize("text", ["有 一个 不对，是 孩子 他 爸", "哎 不对，上个 月 六 号", "那个不对，电话是13812345678",
                                  "嗯，不对"])
def test_a_no_after_a_filler_or_said_as_one_item_is_a_no(reader: ClaimReader, text: str) -> None:
    found = reader.extract(text, CallContext(started_at=NOW, expected_slot="confirm"))
    assert found.affirm is False


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("言午许，文化的文，气宇轩昂的轩", "许文轩"),  # surname by its parts, each given character by a word
        ("言午 许 文化 的 文 气宇轩昂 的 轩", "许文轩"),  # the same, recognizer-spaced
        ("耳东陈，早晨的晨", "陈晨"),
        ("刘洋，刘备的刘，海洋的洋", "刘洋"),  # the full name, then every character explained
        ("我叫刘洋，刘备的刘，海洋的洋", "刘洋"),
        ("张伟，弓长张，伟大的伟", "张伟"),
        ("姓韩，名一凡", "韩一凡"),  # 姓X，名Y
        ("姓杨，名鹏！", "杨鹏"),
    ],
)
def test_a_name_told_character_by_character(reader: ClaimReader, text: str, name: str) -> None:
    assert read(reader, text, "reporter_name")["reporter_name"] == name


def test_a_diagnosis_word_is_no_name_in_an_opening(reader: ClaimReader) -> None:
    values = read(reader, "在吗？我娃昨天晚上一直咳，住院了，支原体肺炎", "reporter_name")
    assert "reporter_name" not in values and values["diagnosis"] == "支原体肺炎"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("7.11", "2026-07-11"),  # month.day as typed
        ("我媳妇2.21打翻了热水", "2026-02-21"),
        ("大概是四月份的三十号确诊的吧", "2026-04-30"),
        ("呃 那个 上个 月 五 号 哦 不对 六 号", "2026-10-06"),  # the caller's own fix keeps the month
        ("上个礼拜二，哎不对，礼拜四", "2026-11-26"),  # ... and the week
        ("昨天，不是，前天", "2026-11-28"),
    ],
)
def test_dates_typed_with_a_dot_or_corrected_inside_the_answer(reader: ClaimReader, text: str, value: str) -> None:
    assert read(reader, text, "incident_date")["incident_date"] == value


@pytest.mark.parametrize("text", ["住了3.5天", "烧到38.5度", "花了1.5万"])
def test_quantities_with_a_dot_are_no_dates(reader: ClaimReader, text: str) -> None:
    assert "incident_date" not in read(reader, text, "incident_date")


def test_digits_corrected_inside_the_answer(reader: ClaimReader) -> None:
    values = read(reader, "一八六，二六零幺，零三六八，哦不对，最后是零三六零", "reporter_phone")
    assert values["reporter_phone"] == "18626010360"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("打翻了热水，烫着了", "意外"), ("做饭切到手指了", "意外"), ("在家撞桌角上了，头破了", "意外"),
        ("被猫抓了", "意外"), ("打羽毛球把脚伤了，住院做了手术", "意外"), ("突然就走了", "身故"),
        ("发烧住院了", "住院"), ("医生给他扎了针，开了药", "门诊"),
    ],
)
def test_incidents_said_by_what_happened(reader: ClaimReader, text: str, kind: str) -> None:
    assert read(reader, text, "incident_type").get("incident_type") == kind


@pytest.mark.parametrize(
    ("text", "relation"),
    [("孩子他爸", "配偶"), ("是俺家当家的", "配偶"), ("我家老太太啊", "父母"), ("俺家小子", "子女"), ("我儿媳妇", "其他")],
)
def test_relations_said_the_way_families_say_them(reader: ClaimReader, text: str, relation: str) -> None:
    assert read(reader, text, "relationship")["relationship"] == relation


@pytest.mark.parametrize(
    ("text", "value"),
    [("就杭州市西湖区人民医院", "杭州市西湖区人民医院"),
     ("就社区医院，叫成都市武侯区玉林社区卫生服务中心", "成都市武侯区玉林社区卫生服务中心")],
)
def test_hospitals_after_a_filler_or_renamed(reader: ClaimReader, text: str, value: str) -> None:
    assert read(reader, text, "hospital")["hospital"] == value


@pytest.mark.parametrize(
    ("text", "value"),
    [("左手食指切割伤吧", "左手食指切割伤"), ("不对，哦，糖尿病酮症酸中毒", "糖尿病酮症酸中毒"),
     ("医生说是肺炎，挺严重的", "肺炎"), ("我这个是骨折", "骨折")],
)
def test_a_typed_diagnosis_keeps_the_words_said_with_its_term(reader: ClaimReader, text: str, value: str) -> None:
    assert read(reader, text, "diagnosis")["diagnosis"] == value


# -- the dialogue ---------------------------------------------------------------------------

ANSWERS = ["我叫王建国", "身份证号是110101199003071233", "我本人", "昨天", "摔了一跤，左腿骨折", "在华西医院"]


def at_read_back() -> tuple[Dialogue, Prompt]:
    flow, reader = load_bound_flows(ROOT / "config")["claim_report"]
    d = Dialogue(flow, reader, CallContext(started_at=NOW, caller_number="13800138000"))
    actions = d.start()
    for text in ANSWERS:
        actions = d.on_text(text)
    prompt = [a for a in actions if isinstance(a, Prompt)][-1]
    assert prompt.slot == "confirm" and "核对" in prompt.text
    return d, prompt


def last(actions) -> Prompt:
    return [a for a in actions if isinstance(a, Prompt)][-1]


def test_a_read_back_answered_twice_with_unknown_words_asks_for_the_yes_or_no_alone() -> None:
    d, first = at_read_back()
    second = last(d.on_text("嘿嘿"))
    assert "核对一下" in second.text  # once more, the whole read-back
    third = last(d.on_text("嘿嘿"))
    assert "核对一下" not in third.text and "按1" in third.text and third.slot == "confirm"
    assert third.dtmf
    fourth = last(d.on_text("嘿嘿"))
    assert fourth.text.startswith("我们一项一项确认")  # never the same question a third time


def test_the_same_value_said_again_at_the_read_back_without_a_no_goes_to_which() -> None:
    d, _ = at_read_back()
    partial = last(d.on_text("是我本人啊"))
    assert "其他信息都对吗" in partial.text
    which = last(d.on_text("是我本人啊"))
    assert which.text.startswith("请问哪一项不对")
