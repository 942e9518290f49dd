"""The whole understanding layer: mixed initiative, bare answers, yes/no, corrections."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from speech.understanding.claims import ClaimReader, compact_text
from speech.understanding.types import CallContext, Extraction

CONFIG = Path(__file__).resolve().parents[1] / "config"
NOW = datetime(2026, 3, 19, 10, 16, tzinfo=timezone(timedelta(hours=8)))  # a Thursday
CALLER = "16066907439"


@pytest.fixture(scope="module")
def u() -> ClaimReader:
    return ClaimReader.from_config(CONFIG)


def run(u: ClaimReader, text: str, expected: str | None = None, *, now: datetime = NOW) -> Extraction:
    return u.extract(text, CallContext(started_at=now, caller_number=CALLER, expected_slot=expected))


def values(e: Extraction) -> dict[str, str]:
    return {slot: v.value for slot, v in e.values.items()}


def test_from_config_accepts_the_dictionaries_folder_too() -> None:
    u = ClaimReader.from_config(CONFIG / "dictionaries")
    assert values(run(u, "我爸")) == {"relationship": "父母"}


def test_compact_text() -> None:
    assert compact_text("我 叫 韦 文博") == "我叫韦文博"
    assert compact_text("幺八零, 零零八零。六三六零！") == "幺八零，零零八零，六三六零"
    assert compact_text("２０２６年３月１７日") == "2026年3月17日"
    assert compact_text("2026-03-17 和 010-12345678") == "2026-03-17和010-12345678"


# -- mixed initiative ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "我爸张建国昨天因为肺炎住进了华西医院",
            {"relationship": "父母", "insured_name": "张建国", "incident_date": "2026-03-18",
             "incident_type": "住院", "hospital": "四川大学华西医院", "diagnosis": "肺炎"},
        ),
        (
            "我 爸 张 建国 昨天 因为 肺炎 住 进 了 华西 医院",  # the same from the recognizer
            {"relationship": "父母", "insured_name": "张建国", "incident_date": "2026-03-18",
             "incident_type": "住院", "hospital": "四川大学华西医院", "diagnosis": "肺炎"},
        ),
        (
            "你好，我要报案，我十月十八号摔了一跤，软组织挫伤，在北京同仁医院",
            {"relationship": "本人", "incident_date": "2025-10-18", "incident_type": "意外",
             "hospital": "首都医科大学附属北京同仁医院", "diagnosis": "软组织挫伤"},
        ),
        (
            "我要报案，我叫韦文博，给我自己报",
            {"reporter_name": "韦文博", "relationship": "本人", "insured_name": "韦文博"},
        ),
        (
            "我要 报案 我 叫 苏勇 给 我 邻居 报",
            {"reporter_name": "苏勇", "relationship": "其他"},
        ),
        (
            "你好 我要 报案 我 母亲 韩 宇航 九天 前人 走 了 突发 心梗 在 北大 一院",
            {"relationship": "父母", "insured_name": "韩宇航", "incident_date": "2026-03-10",
             "incident_type": "身故", "hospital": "北京大学第一医院", "diagnosis": "突发心肌梗死"},
        ),
        (
            "我叫李明，身份证号码是110101199003072316，手机13800138000",
            {"reporter_name": "李明", "insured_id_number": "110101199003072316", "reporter_phone": "13800138000"},
        ),
        (
            "我母亲在中山大学附属第一医院住院，诊断是脑梗塞",
            {"relationship": "父母", "hospital": "中山大学附属第一医院", "incident_type": "住院", "diagnosis": "脑梗塞"},
        ),
        (
            "出险时间是2024年3月15号晚上八点左右",
            {"incident_date": "2024-03-15"},
        ),
        (
            "我女儿在学校摔伤了，左手手腕骨折",
            {"relationship": "子女", "incident_type": "意外", "diagnosis": "左手手腕骨折"},
        ),
        (
            "我在肿瘤医院住院，诊断是肺炎",  # 肿瘤 in a hospital name is not a cancer
            {"hospital": "肿瘤医院", "incident_type": "住院", "diagnosis": "肺炎"},
        ),
    ],
)
def test_mixed_initiative(u: ClaimReader, text: str, expected: dict[str, str]) -> None:
    assert values(run(u, text)) == expected


# -- bare answers read with the slot that was asked -------------------------------------


@pytest.mark.parametrize(
    ("expected_slot", "text", "slot", "value"),
    [
        ("reporter_name", "韦文博", "reporter_name", "韦文博"),
        ("insured_name", "韦文博", "insured_name", "韦文博"),
        ("reporter_name", "我 叫 韦 文博", "reporter_name", "韦文博"),
        ("insured_name", "他叫谢金凤", "insured_name", "谢金凤"),
        ("reporter_phone", "幺八零零零八零六三六零", "reporter_phone", "18000806360"),
        ("insured_id_number", "三三零一零六一九九零一一一三零九六一", "insured_id_number", "330106199011130961"),
        ("reporter_phone", "零一零 一二三四 五六七八", "reporter_phone", "010-12345678"),
        ("relationship", "就是我本人", "relationship", "本人"),
        ("relationship", "是我", "relationship", "本人"),
        ("incident_date", "是前天晚上", "incident_date", "2026-03-17"),
        ("hospital", "协和", "hospital", "北京协和医院"),
        ("hospital", "在省立医院看的", "hospital", "省立医院"),
        ("diagnosis", "医生说是过度劳累", "diagnosis", "过度劳累"),
        ("incident_type", "确诊了白血病", "incident_type", "重疾"),
    ],
)
def test_bare_answers(u: ClaimReader, expected_slot: str, text: str, slot: str, value: str) -> None:
    assert values(run(u, text, expected_slot)).get(slot) == value


def test_bare_name_is_not_taken_when_another_slot_was_asked(u: ClaimReader) -> None:
    assert values(run(u, "韦文博", "hospital")).get("reporter_name") is None


def test_diagnosis_answer_does_not_set_the_type(u: ClaimReader) -> None:
    # the caller said 身故 earlier; "突发心梗" answers the diagnosis only
    assert values(run(u, "医生说是突发心梗", "diagnosis")) == {"diagnosis": "突发心肌梗死"}
    assert values(run(u, "骨折", "diagnosis")) == {"diagnosis": "骨折"}


def test_the_digits_route_by_the_question_and_the_shape(u: ClaimReader) -> None:
    assert values(run(u, "13800138000")) == {"reporter_phone": "13800138000"}
    assert values(run(u, "110101199003072316")) == {"insured_id_number": "110101199003072316"}
    assert values(run(u, "身份证号是110101199003072316", "reporter_phone")) == {"insured_id_number": "110101199003072316"}


@pytest.mark.parametrize(
    ("expected_slot", "text", "slot", "code"),
    [
        ("insured_id_number", "一一零一零一一九九零零三零七二三一", "insured_id_number", "id_length"),
        ("insured_id_number", "一一零一零一一九九零零三零七二三一七", "insured_id_number", "id_checksum"),
        ("insured_id_number", "一一零一零一一九九零一三零七二三一六", "insured_id_number", "id_birth_date"),
        ("reporter_phone", "幺八零零零八零六三六", "reporter_phone", "phone_format"),
        ("incident_date", "明天", "incident_date", "date_future"),
    ],
)
def test_problems(u: ClaimReader, expected_slot: str, text: str, slot: str, code: str) -> None:
    e = run(u, text, expected_slot)
    assert slot not in e.values
    assert e.problems[slot].code == code


def test_caller_number(u: ClaimReader) -> None:
    e = run(u, "就用这个号码", "reporter_phone")
    assert e.use_caller_number
    assert values(e) == {"reporter_phone": CALLER}
    e = u.extract("就是这个来电号码", CallContext(NOW, None, "reporter_phone"))
    assert e.use_caller_number and e.values == {}


def test_recognizer_digit_homophones_when_a_number_is_asked(u: ClaimReader) -> None:
    assert values(run(u, "我 的 手机号 是 要 八零 零零 八零 六 三六零", "reporter_phone")) == {
        "reporter_phone": "18000806360"
    }


def test_relationship_homophones_when_asked(u: ClaimReader) -> None:
    assert values(run(u, "是 我 吧", "relationship")) == {"relationship": "父母"}
    assert values(run(u, "是 我 吧", "incident_date")) == {}


def test_dates_resolve_in_shanghai_time(u: ClaimReader) -> None:
    # 2026-03-18 17:30 UTC is already the 19th in Beijing
    utc = datetime(2026, 3, 18, 17, 30, tzinfo=timezone.utc)
    assert values(run(u, "昨天", "incident_date", now=utc)) == {"incident_date": "2026-03-18"}
    naive = datetime(2026, 3, 19, 0, 30)
    assert values(run(u, "昨天", "incident_date", now=naive)) == {"incident_date": "2026-03-18"}


# -- yes / no / corrections ---------------------------------------------------------------


@pytest.mark.parametrize("text", ["对", "对的", "是的", "嗯对", "没错", "正确", "嗯", "对对对", "是的 是的", "对，没问题"])
def test_yes(u: ClaimReader, text: str) -> None:
    e = run(u, text, "confirm")
    assert e.affirm is True and not e.correction


@pytest.mark.parametrize("text", ["不对", "不是", "错了", "有误", "不正确", "不 对"])
def test_no(u: ClaimReader, text: str) -> None:
    e = run(u, text, "confirm")
    assert e.affirm is False and e.values == {}


def test_plain_answers_are_neither_yes_nor_no(u: ClaimReader) -> None:
    assert run(u, "是前天晚上", "incident_date").affirm is None
    assert run(u, "不幸去世了", "incident_type").affirm is None
    assert run(u, "不幸去世了", "incident_type").correction is False


@pytest.mark.parametrize(
    ("text", "slot", "value"),
    [
        ("不对，身份证号是三三零幺零六幺九九零幺幺幺三零九六幺", "insured_id_number", "330106199011130961"),
        ("错了，三三零一零六一九九零一一一三零九六一", "insured_id_number", "330106199011130961"),
        ("不是，幺八零，零零八零，六三六零", "reporter_phone", "18000806360"),
        ("不对，前天晚上", "incident_date", "2026-03-17"),
        ("不是前天，是昨天", "incident_date", "2026-03-18"),
        ("不对，是我女儿", "relationship", "子女"),
        ("错了，出了意外，软组织挫伤", "incident_type", "意外"),
        ("不对，在深圳市人民医院", "hospital", "深圳市人民医院"),
        ("不是，软组织挫伤", "diagnosis", "软组织挫伤"),
        ("不对，姓韦，叫韦文博", "reporter_name", "韦文博"),
        ("不对，韦文博", "reporter_name", "韦文博"),
        ("名字错了，是韦文博", "reporter_name", "韦文博"),
        ("不对，我女儿叫谢金凤", "insured_name", "谢金凤"),
        ("出险人名字错了，是谢金凤", "insured_name", "谢金凤"),
        ("我爸的名字不对，应该是张建国", "insured_name", "张建国"),
        ("不对 身份证 号 是 三 三 零 幺 零 六 幺 九 九 零 幺 幺 幺 三 零 九 六 幺", "insured_id_number", "330106199011130961"),
    ],
)
def test_corrections(u: ClaimReader, text: str, slot: str, value: str) -> None:
    e = run(u, text, "confirm")
    assert e.correction and e.affirm is False
    assert values(e).get(slot) == value


def test_correction_naming_the_id_slot_never_fills_the_phone(u: ClaimReader) -> None:
    e = run(u, "不对，身份证号是13800138000", "confirm")
    assert "reporter_phone" not in e.values
    assert e.problems["insured_id_number"].code == "id_length"


def test_correction_without_a_value(u: ClaimReader) -> None:
    e = run(u, "身份证号不对", "confirm")
    assert e.correction and e.affirm is False and e.values == {}


@pytest.mark.parametrize("text", ["转人工", "我要人工客服", "人工", "帮我转 人工 服务", "找人工"])
def test_wants_human(u: ClaimReader, text: str) -> None:
    assert run(u, text).wants_human


def test_not_human(u: ClaimReader) -> None:
    assert not run(u, "我爸做了人工关节置换手术", "diagnosis").wants_human


def test_empty_and_noise(u: ClaimReader) -> None:
    for text in ("", "   ", "，。", "嗯嗯啊"):
        e = run(u, text, "reporter_name")
        assert e.values == {} and e.problems == {}


def test_jieba_tokenizer_is_private_and_knows_the_terms(u: ClaimReader) -> None:
    import jieba

    tokens = u.tokenizer().lcut("我爸因为急性心肌梗死住进了四川大学华西医院")
    assert "心肌梗死" in tokens and "四川大学华西医院" in tokens
    assert u.tokenizer() is not jieba.dt


@pytest.mark.parametrize(
    ("expected_slot", "text"),
    [("hospital", "不知道"), ("diagnosis", "不清楚"), ("reporter_name", "不知道"), ("insured_name", "我不记得了")],
)
def test_dont_know_is_no_answer(u: ClaimReader, expected_slot: str, text: str) -> None:
    assert run(u, text, expected_slot).values == {}


def test_correction_keeps_the_last_value(u: ClaimReader) -> None:
    assert values(run(u, "不是协和，是华西", "hospital")) == {"hospital": "四川大学华西医院"}
    assert values(run(u, "不对不对，不是骨折，是扭伤", "diagnosis")) == {"diagnosis": "扭伤"}


def test_owning_is_not_being_the_insured(u: ClaimReader) -> None:
    assert values(run(u, "就是我的手机号 13800138000", "reporter_phone")) == {"reporter_phone": "13800138000"}
    assert "relationship" not in values(run(u, "就是我现在打的这个", "reporter_phone"))


@pytest.mark.parametrize("text", ["我叫公元前一万年", "我叫三月五号", "北京市", "住院部", "我叫下午三点"])
def test_the_claim_reader_refuses_what_is_no_name(u: ClaimReader, text: str) -> None:
    e = run(u, text, "reporter_name")
    assert "reporter_name" not in e.values, e.values


@pytest.mark.parametrize(("text", "name"), [("我叫王芳", "王芳"), ("欧阳娜娜", "欧阳娜娜"), ("我叫司马光", "司马光")])
def test_the_claim_reader_still_takes_real_names(u: ClaimReader, text: str, name: str) -> None:
    assert values(run(u, text, "reporter_name")).get("reporter_name") == name
