"""Slot kinds (speech.understanding.kinds): each read from how callers say it, normalized,
validated, and the grammar its question is heard with."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from speech.understanding.kinds import KINDS, Heard, KindError, KindRegistry
from speech.understanding.claims import compact_text

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 3, 20, 10, 0, tzinfo=timezone(timedelta(hours=8)))


@pytest.fixture(scope="module")
def registry() -> KindRegistry:
    return KindRegistry.from_config(ROOT / "config")


def read(kind, text: str, asked: bool = True, recognized: bool = False):
    reading = kind.read(Heard(compact_text(text), NOW, asked, recognized))
    return None if reading is None else (reading.value, reading.problem)


def value(kind, text: str, asked: bool = True, recognized: bool = False) -> str | None:
    reading = read(kind, text, asked, recognized)
    return None if reading is None else reading[0]


def test_every_kind_of_the_brief_is_registered() -> None:
    assert {"person_name", "phone", "id_number", "date", "yes_no", "choice", "rating", "number", "money",
            "free_text", "relationship", "incident_type", "hospital", "diagnosis"} <= set(KINDS)


def test_an_unknown_kind_or_option_is_refused(registry: KindRegistry) -> None:
    with pytest.raises(KindError, match="unknown kind 'stars'.*rating"):
        registry.make("stars")
    with pytest.raises(KindError, match="options.maximum: unknown option"):
        registry.make("rating", {"maximum": 5})
    with pytest.raises(KindError, match="options.choices"):
        registry.make("choice", {})
    with pytest.raises(KindError, match="min < max"):
        registry.make("rating", {"min": 5, "max": 5})


# ---------------------------------------------------------------- yes_no


@pytest.mark.parametrize("text", [
    "是的", "是", "对", "对的", "嗯", "嗯嗯", "没错", "已经处理好了", "处理完了", "对，已经处理完了", "处理好了",
    "早就处理好了", "赔款已经到账了", "是的，都办好了", "嗯，结案了", "处理完了，没问题", "好了", "是啊",
])
def test_yes(registry: KindRegistry, text: str) -> None:
    assert value(registry.make("yes_no"), text) == "是"


@pytest.mark.parametrize("text", [
    "没有", "还没", "还没有", "没有，还在等", "不是", "还在处理", "还没处理完", "没呢", "好像还没有", "否",
    "没处理好", "不对，还没赔",
])
def test_no(registry: KindRegistry, text: str) -> None:
    assert value(registry.make("yes_no"), text) == "否"


@pytest.mark.parametrize("text", ["不知道", "不清楚", "你说什么", "我想问一下", "不方便，别再打了"])
def test_neither_yes_nor_no(registry: KindRegistry, text: str) -> None:
    assert read(registry.make("yes_no"), text) is None


def test_yes_no_only_answers_its_own_question_and_stores_the_flows_words(registry: KindRegistry) -> None:
    kind = registry.make("yes_no", {"affirm": "已处理", "deny": "未处理"})
    assert value(kind, "是的", asked=False) is None  # a yes to another question
    assert value(kind, "处理好了") == "已处理" and value(kind, "还没") == "未处理"
    assert kind.normalize("对的") == "已处理"
    assert kind.validate("已处理", NOW) is None and kind.validate("是", NOW) == "yes_no_value"


def test_yes_no_grammar_is_the_dialogue_acts_words(registry: KindRegistry) -> None:
    grammar = registry.make("yes_no").grammar()
    assert {"是的", "对", "没错", "不是", "没有", "还没", "已经", "处理好了"} <= set(grammar)


# ---------------------------------------------------------------- rating


@pytest.mark.parametrize("text, score", [
    ("五分", "5"), ("5分", "5"), ("５分", "5"), ("打五分", "5"), ("给五星", "5"), ("五颗星", "5"), ("满分", "5"),
    ("给满分", "5"), ("打满分吧", "5"), ("五", "5"), ("5", "5"), ("四分吧", "4"), ("打四分吧", "4"), ("四五分吧", "4"),
    ("三分", "3"), ("就打三分", "3"), ("给个两分", "2"), ("两分", "2"), ("一分", "1"), ("嗯，四分", "4"),
    ("我给三星吧", "3"), ("非常满意", "5"), ("十分满意", "5"), ("一般般吧", "3"), ("很不满意", "1"),
])
def test_rating(registry: KindRegistry, text: str, score: str) -> None:
    assert value(registry.make("rating", {"max": 5}), text) == score


@pytest.mark.parametrize("text", ["十分", "打八分", "零分", "6分"])
def test_rating_out_of_the_scale_is_a_problem(registry: KindRegistry, text: str) -> None:
    assert read(registry.make("rating", {"max": 5}), text) == (None, "rating_range")


def test_rating_on_a_scale_of_ten_and_keyed(registry: KindRegistry) -> None:
    ten = registry.make("rating", {"max": 10})
    assert value(ten, "十分") == "10" and value(ten, "打八分") == "8" and value(ten, "满分") == "10"
    five = registry.make("rating", {"max": 5})
    assert value(five, "4") == "4"  # a key pressed reaches the kind as its digit
    assert value(five, "五", asked=False) is None and value(five, "打四分", asked=False) == "4"
    assert five.normalize("给五星吧") == "5" and five.validate("5", NOW) is None and five.validate("6", NOW)


def test_rating_grammar_is_the_scores_in_words(registry: KindRegistry) -> None:
    grammar = set(registry.make("rating", {"max": 5}).grammar())
    assert {"一", "五", "五分", "打五分", "两分", "四分", "给五星", "满分"} <= grammar
    assert "六分" not in grammar


# ---------------------------------------------------------------- choice

CHANNELS = {"choices": {"短信": ["发短信", "信息"], "微信": ["微信上", "加微信"], "电话": ["打电话", "来电话"]}}


@pytest.mark.parametrize("text, choice", [
    ("短信", "短信"), ("发短信就行", "短信"), ("发个信息吧", "短信"), ("微信", "微信"), ("微信上联系我吧", "微信"),
    ("加微信吧", "微信"), ("打电话", "电话"), ("电话吧", "电话"), ("还是打电话吧", "电话"),
    ("别打电话，发短信", "短信"), ("电话就不用了，微信吧", "微信"), ("不要发短信，打电话", "电话"),
])
def test_choice(registry: KindRegistry, text: str, choice: str) -> None:
    assert value(registry.make("choice", CHANNELS), text) == choice


def test_choice_neither_and_unasked(registry: KindRegistry) -> None:
    kind = registry.make("choice", CHANNELS)
    assert read(kind, "都行") is None and read(kind, "随便") is None
    assert value(kind, "以后加微信联系", asked=False) == "微信"
    assert value(kind, "微信或者电话", asked=False) is None  # two of them, not asked: no answer
    assert kind.normalize("打电话") == "电话" and kind.validate("传真", NOW) == "choice_value"
    assert {"短信", "发短信", "微信上", "打电话"} <= set(kind.grammar())


def test_choice_from_a_dictionary_file(registry: KindRegistry) -> None:
    kind = registry.make("choice", {"dictionary": "relationships.yaml"})
    assert value(kind, "是我老婆") == "配偶"
    with pytest.raises(KindError, match="cannot read"):
        registry.make("choice", {"dictionary": "no_such.yaml"})
    with pytest.raises(KindError, match="not both"):
        registry.make("choice", {"dictionary": "relationships.yaml", "choices": ["a"]})


# ---------------------------------------------------------------- free_text


@pytest.mark.parametrize("text, remark", [
    ("理赔速度挺快的，挺满意的", "理赔速度挺快的，挺满意的"),
    ("嗯，希望以后能快一点", "希望以后能快一点"),
    ("那个，就是材料太多了吧", "材料太多了"),
    ("呃 客服态度很好 谢谢", "客服态度很好"),
    ("没有了，谢谢", "无"), ("没有", "无"), ("没什么意见", "无"), ("暂时没有", "无"), ("没有了", "无"),
])
def test_free_text(registry: KindRegistry, text: str, remark: str) -> None:
    assert value(registry.make("free_text"), text) == remark


def test_free_text_is_not_read_unasked_and_has_no_grammar(registry: KindRegistry) -> None:
    kind = registry.make("free_text", {"none": "没有意见"})
    assert value(kind, "挺好的服务", asked=False) is None
    assert value(kind, "没有") == "没有意见"
    assert read(kind, "嗯") is None and read(kind, "没听清") is None
    assert kind.grammar() is None


# ---------------------------------------------------------------- number, money


@pytest.mark.parametrize("text, n", [("三", "3"), ("3次", "3"), ("大概十二次", "12"), ("二十三", "23"), ("两次", "2")])
def test_number(registry: KindRegistry, text: str, n: str) -> None:
    assert value(registry.make("number", {"unit": "次", "max": 99}), text) == n


def test_number_range_unit_and_grammar(registry: KindRegistry) -> None:
    kind = registry.make("number", {"unit": "天", "min": 1, "max": 30})
    assert read(kind, "四十天") == (None, "number_range")
    assert value(kind, "住了三天", asked=False) == "3" and value(kind, "三", asked=False) is None
    assert {"三", "十", "三天"} <= set(kind.grammar())


@pytest.mark.parametrize("text, amount", [
    ("三千五百元", "3500"), ("3500块", "3500"), ("两万块", "20000"), ("三万五", "35000"), ("1.5万", "15000"),
    ("三点五万", "35000"), ("花了大概两千块钱", "2000"), ("八千多块", "8000"), ("5000", "5000"), ("一百二十块", "120"),
])
def test_money(registry: KindRegistry, text: str, amount: str) -> None:
    assert value(registry.make("money"), text) == amount


def test_money_unasked_needs_a_unit(registry: KindRegistry) -> None:
    kind = registry.make("money", {"max": 100000})
    assert value(kind, "住院花了两万多", asked=False) == "20000"
    assert value(kind, "三", asked=False) is None
    assert read(kind, "两百万") == (None, "money_range")
    assert kind.normalize("一千块") == "1000" and kind.validate("1000", NOW) is None
    assert {"万", "块", "元"} <= set(kind.grammar())


# ---------------------------------------------------------------- person_name, phone, id_number, date


def test_person_name(registry: KindRegistry) -> None:
    kind = registry.make("person_name")
    assert value(kind, "我叫张建国") == "张建国"
    assert value(kind, "韦文博") == "韦文博"
    assert value(kind, "我姓王，叫王小明") == "王小明"
    assert value(kind, "韦文博", asked=False) is None  # a bare name answers only its own question
    assert kind.validate("张建国", NOW) is None and kind.grammar() is None


@pytest.mark.parametrize("text", ["13812345678", "幺三八 幺二三四 五六七八", "手机是138-1234-5678", "一三八一二三四五六七八"])
def test_phone(registry: KindRegistry, text: str) -> None:
    assert value(registry.make("phone"), text) == "13812345678"


def test_phone_problem_and_validate(registry: KindRegistry) -> None:
    kind = registry.make("phone")
    assert read(kind, "幺三八幺二三四五") == (None, "phone_format")
    assert kind.validate("13812345678", NOW) is None and kind.validate("12345", NOW) == "phone_format"


def test_id_number(registry: KindRegistry) -> None:
    kind = registry.make("id_number")
    assert value(kind, "11010519491231002X") == "11010519491231002X"
    assert value(kind, "幺幺零幺零五 幺九四九幺二三幺 零零二叉") == "11010519491231002X"
    assert read(kind, "110105194912310021")[1] == "id_checksum"
    assert {"幺", "叉"} <= set(kind.grammar())


@pytest.mark.parametrize("text, day", [("昨天", "2026-03-19"), ("前天下午", "2026-03-18"), ("3月5号", "2026-03-05"),
                                       ("二月二十八号", "2026-02-28"), ("2026-03-17", "2026-03-17")])
def test_date(registry: KindRegistry, text: str, day: str) -> None:
    assert value(registry.make("date"), text) == day


def test_date_in_the_future_is_a_problem(registry: KindRegistry) -> None:
    kind = registry.make("date")
    assert read(kind, "明天")[1] == "date_future"
    assert kind.validate("2026-03-21", NOW) == "date_future" and kind.normalize("2026-03-01") == "2026-03-01"
    assert "昨天" in kind.grammar()


# ---------------------------------------------------------------- the claim kinds


@pytest.mark.parametrize("kind, text, expected", [
    ("relationship", "是我女儿", "子女"), ("relationship", "我是他女儿", "父母"), ("relationship", "本人", "本人"), ("relationship", "我老婆", "配偶"),
    ("incident_type", "住院了", "住院"), ("incident_type", "出车祸了", "意外"),
    ("hospital", "在华西医院", "四川大学华西医院"), ("diagnosis", "医生说是肺炎", "肺炎"),
])
def test_claim_kinds_read_by_the_joint_reader(registry: KindRegistry, kind: str, text: str, expected: str) -> None:
    made = registry.make(kind)
    assert value(made, text) == expected
    assert made.grammar() is None  # they hear whole stories: their slot's hints, or everything


def test_claim_kinds_validate(registry: KindRegistry) -> None:
    assert registry.make("relationship").validate("配偶", NOW) is None
    assert registry.make("relationship").validate("邻居", NOW) == "relationship_value"
    assert registry.make("incident_type").validate("住院", NOW) is None


@pytest.mark.parametrize("text", ["我叫公元前一万年", "我叫三月五号", "我叫下午三点", "我叫北京市", "住院部", "一百二十"])
def test_person_name_refuses_what_is_no_name(registry: KindRegistry, text: str) -> None:
    kind = registry.make("person_name")
    reading = kind.read(Heard(compact_text(text), NOW, True, False))
    assert reading is None or (reading.value is None and reading.problem in ("name_invalid", "name_length")), reading
    for name in ("公元前一万年", "三月五号", "北京市", "住院部"):
        assert kind.validate(name, NOW) in ("name_invalid", "name_length")
    for name in ("王芳", "欧阳娜娜", "买买提·艾力", "司马光"):
        assert kind.validate(name, NOW) is None
