"""ClaimReader recognized speech (CallContext.recognized): homophone names, misheard yes/no,
misheard words before a hospital's name; typed text is read as it is."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from speech.understanding.claims import ClaimReader
from speech.understanding.types import CallContext, Extraction

CONFIG = Path(__file__).resolve().parents[1] / "config"
NOW = datetime(2026, 3, 19, 10, 16, tzinfo=timezone(timedelta(hours=8)))


@pytest.fixture(scope="module")
def u() -> ClaimReader:
    return ClaimReader.from_config(CONFIG)


def heard(u: ClaimReader, text: str, expected: str | None = None, recognized: bool = True) -> Extraction:
    return u.extract(text, CallContext(NOW, "16066907439", expected, recognized))


def values(e: Extraction) -> dict[str, str]:
    return {slot: v.value for slot, v in e.values.items()}


def test_recognized_names_are_spelled_as_common_names_typed_ones_are_not(u: ClaimReader) -> None:
    assert values(heard(u, "我 叫 涵 建 国", "reporter_name")) == {"reporter_name": "韩建国"}
    assert values(heard(u, "我 女 儿 叫 田 家 姨", "insured_name")) == {"insured_name": "田佳怡", "relationship": "子女"}
    assert values(heard(u, "我叫涵建国", "reporter_name", recognized=False)) == {"reporter_name": "涵建国"}


def test_a_recognized_name_unlike_a_name_is_doubtful(u: ClaimReader) -> None:
    good = heard(u, "不对 我 是 刘磊", "confirm").values["reporter_name"]
    odd = heard(u, "我 叫 证券", "reporter_name").values["reporter_name"]
    assert good.value == "刘磊" and good.confidence >= 0.9
    assert odd.confidence <= 0.4
    assert heard(u, "我叫证券", "reporter_name", recognized=False).values["reporter_name"].value == "证券"


@pytest.mark.parametrize("text", ["对等", "是 等", "对 的"])
def test_misheard_yes_at_the_read_back(u: ClaimReader, text: str) -> None:
    assert heard(u, text, "confirm").affirm is True
    assert heard(u, text, "confirm", recognized=False).affirm is (True if text == "对 的" else None)


def test_no_is_never_read_as_yes_by_sound(u: ClaimReader) -> None:
    assert heard(u, "不对", "confirm").affirm is False
    assert heard(u, "没 得", "confirm").affirm is not True


def test_misheard_cuo_le_is_a_correction_with_its_slot(u: ClaimReader) -> None:
    e = heard(u, "错 出门 我 叫 建国", "confirm")
    assert e.affirm is False and e.correction
    e = heard(u, "错 出门 我 的 手机 是 一三五 四六 巴塞尔 妻子 去", "confirm")
    assert e.affirm is False and e.correction and e.about == "reporter_phone"
    assert heard(u, "错误", "confirm").affirm is None  # a word that starts with 错 is no "wrong"


def test_the_slot_a_correction_names(u: ClaimReader) -> None:
    assert heard(u, "不对 在 北京 协和医院", "confirm").about == "hospital"
    assert heard(u, "不对 身份证号 是 三三零", "confirm").about == "insured_id_number"
    assert heard(u, "对", "confirm").about is None


@pytest.mark.parametrize("text, hospital", [
    ("战 省 人 民 医 院", "省人民医院"),  # 在 heard as 战
    ("大 瑞 金 医 院", "上海交通大学医学院附属瑞金医院"),
    ("大 深 镇 人 民 医 院", "深圳市人民医院"),  # and 深圳 as 深镇
])
def test_a_misheard_word_before_a_hospital_name(u: ClaimReader, text: str, hospital: str) -> None:
    assert values(heard(u, text, "hospital"))["hospital"] == hospital


@pytest.mark.parametrize("text, hospital", [
    ("大 江苏省 人民 医院", "江苏省人民医院"),  # 在 heard as 大, before a province
    ("大 无锡市 骨科 医院", "无锡市骨科医院"),  # ... before a city
    ("市 浙 阳 本 苏州市 中心 医院", "苏州市中心医院"),  # 是这样的 heard as words
    ("在 暨南市 骨科 医院", "济南市骨科医院"),  # no city 暨南: the city that sounds the same
])
def test_misheard_words_before_a_place_are_not_the_hospitals_name(u: ClaimReader, text: str, hospital: str) -> None:
    assert values(heard(u, text, "hospital"))["hospital"] == hospital


@pytest.mark.parametrize("text, hospital", [
    ("江苏省 苏州市 中心 医院", "江苏省苏州市中心医院"),  # a province before its city is part of the name
    ("大连市 中心 医院", "大连市中心医院"),  # a city that begins with 大
    ("复旦 大学 附属 中山 医院", "复旦大学附属中山医院"),  # a university before a city's name
    ("在 暨南 大学 附属 第一 医院", "暨南大学附属第一医院"),  # 暨南 without 市 is the university
])
def test_a_place_inside_a_hospitals_name_is_kept(u: ClaimReader, text: str, hospital: str) -> None:
    assert values(heard(u, text, "hospital"))["hospital"] == hospital
    assert values(heard(u, text.replace(" ", ""), "hospital", recognized=False))["hospital"] == hospital


def test_a_name_said_by_sound_keeps_its_own_first_characters(u: ClaimReader) -> None:
    assert values(heard(u, "第 六 人 民 医 院", "hospital"))["hospital"] == "第六人民医院"  # not 人民医院


def test_an_illness_is_no_hospital_name(u: ClaimReader) -> None:
    assert "hospital" not in heard(u, "左 骨折", "hospital").values
    assert "hospital" not in heard(u, "左骨折", "hospital", recognized=False).values


def test_an_invalid_id_keeps_the_digits_heard(u: ClaimReader) -> None:
    e = heard(u, "身 份 证 号 是 三 一 零 一 五 二 零 一 零 二 一 五 七 九 七 八", "insured_id_number")
    problem = e.problems["insured_id_number"]
    assert problem.code == "id_length" and problem.heard == "3101520102157978"


@pytest.mark.parametrize("text, hospital", [
    ("在 南 宁 市 中 心 医 院", "南宁市中心医院"),
    ("不对 在 南宁市 中心医院", "南宁市中心医院"),
    ("长 沙 县 人 民 医 院", "长沙县人民医院"),
    ("温 州 市 第 二 人 民 医 院", "温州市第二人民医院"),
])
def test_a_place_before_a_name_every_place_has_is_kept(u: ClaimReader, text: str, hospital: str) -> None:
    # a local hospital said whole is not a misheard word before 市中心医院 / 县人民医院
    expected = "confirm" if text.startswith("不对") else "hospital"
    assert values(heard(u, text, expected))["hospital"] == hospital


@pytest.mark.parametrize("text, name", [
    ("我 姓 鹏 叫 朋 玉 小", "彭玉小"),  # 彭 heard as 鹏 and 朋
    ("亲 夫 叫 父 雷 伟", "付雷伟"),  # 姓符 heard as 亲夫, 符 as 父
    ("鹏 朋 一 小", "彭一小"),  # the surname, then the full name
])
def test_a_surname_heard_as_a_character_that_sounds_like_it(u: ClaimReader, text: str, name: str) -> None:
    assert values(heard(u, text, "reporter_name"))["reporter_name"] == name


def test_characters_that_sound_like_surnames_elsewhere_are_not_names(u: ClaimReader) -> None:
    assert "reporter_name" not in heard(u, "喂 你好 我 想 报 个 案", "reporter_name").values
    assert "reporter_name" not in heard(u, "你好 我 要 报案", "reporter_name").values  # not 倪好
    assert "reporter_name" not in heard(u, "你 好 我 要 报 案", "reporter_name").values
    assert "reporter_name" not in heard(u, "亲 夫 叫 父 雷 伟", "reporter_name", recognized=False).values
    assert values(heard(u, "王 鹏", "reporter_name"))["reporter_name"] == "王鹏"  # a given name stays


@pytest.mark.parametrize("text, day", [
    ("期 天 前", "2026-03-12"),  # 七 heard as 期
    ("大 概 期 天 前 吧", "2026-03-12"),
    ("三 月 酒 号", "2026-03-09"),  # 九 as 酒
    ("上 星 期 天", "2026-03-15"),  # 星期 keeps its 期
])
def test_a_numeral_heard_as_its_homophone_before_a_date_unit(u: ClaimReader, text: str, day: str) -> None:
    assert values(heard(u, text, "incident_date"))["incident_date"] == day


@pytest.mark.parametrize("text, relationship", [
    ("我 公 女", "子女"),  # 我闺女, gui heard as gong
    ("出 事 的 是 我 给 女", "子女"),
])
def test_a_relation_word_with_one_syllable_misheard(u: ClaimReader, text: str, relationship: str) -> None:
    assert values(heard(u, text, "relationship"))["relationship"] == relationship


def test_two_syllables_with_one_misheard_are_no_relation(u: ClaimReader) -> None:
    assert "relationship" not in heard(u, "我 公", "relationship").values  # not 我哥


def test_a_bare_diagnosis_heard_as_words_that_sound_like_a_term(u: ClaimReader) -> None:
    assert values(heard(u, "手 指 歌 声", "diagnosis"))["diagnosis"] == "手指割伤"  # ge sheng / ge shang
    assert values(heard(u, "左 腿 骨 这", "diagnosis"))["diagnosis"] == "左腿骨折"
    # two terms fit 该爱 as well (肝癌, 宫癌): kept as heard, for the read-back to settle
    assert values(heard(u, "该 爱", "diagnosis"))["diagnosis"] == "该爱"
    assert values(heard(u, "手 指 歌 声", "diagnosis", recognized=False))["diagnosis"] == "手指歌声"


def test_saying_which_item_is_wrong_gives_no_name(u: ClaimReader) -> None:
    for said in ("名 字 不 对", "不对 名字 错了"):
        assert "reporter_name" not in heard(u, said, "confirm").values, said


def test_a_surname_heard_with_another_tone(u: ClaimReader) -> None:
    assert values(heard(u, "儿 姓 草 叫 草 明 贵", "reporter_name"))["reporter_name"] == "曹明贵"  # 曹 cao2, 草 cao3


def test_shi_after_a_city_before_a_hospital_kind_is_shi_the_city(u: ClaimReader) -> None:
    # 市 heard as 是 in free speech: "在洛阳是第三人民医院"
    assert values(heard(u, "有 个 地方 不对 在 洛阳 是 第三 人民医院", "confirm"))["hospital"] == "洛阳市第三人民医院"
    assert values(heard(u, "襄 阳 市 儿 童 医 院", "hospital"))["hospital"] == "襄阳市儿童医院"


@pytest.mark.parametrize("text, name", [
    ("儿 沙 志 志 是 名 字", "沙志"),  # "嗯，沙志，志是名字": 嗯 heard as 儿
    ("饿 张 明", "张明"),  # 呃 as 饿
    ("恩 王 芳", "王芳"),
])
def test_a_filler_heard_as_a_character_before_a_name_is_no_part_of_it(u: ClaimReader, text: str, name: str) -> None:
    assert values(heard(u, text, "reporter_name"))["reporter_name"] == name


def test_mian_gui_is_never_part_of_a_name(u: ClaimReader) -> None:
    # "嗯，免贵姓张，叫张文淑" heard with 嗯 as 鹏 and 叫张 as 秀珍: no 彭免贵; asked again instead
    assert values(heard(u, "嗯 免 贵 姓 张 叫 张 文 淑", "reporter_name"))["reporter_name"] == "张文淑"
    assert "reporter_name" not in heard(u, "鹏 免 贵 姓 章 秀 珍 文 叔", "reporter_name").values


def test_the_last_character_explained_after_a_misheard_surname_is_no_surname(u: ClaimReader) -> None:
    # "党海，大海的海" heard 导海: 大海的海 explains 海, not a surname 海 before the name (海导海)
    assert values(heard(u, "导 海 大 海 的 海", "reporter_name"))["reporter_name"] == "导海"


@pytest.mark.parametrize("text, kind", [
    ("我 爱人 过 是 为 去 脑出血", "身故"),  # 过世 heard as 过是: not 重疾 for the brain haemorrhage
    ("出 了 医 外 左 腿 骨 脚", "意外"),  # 意外 as 医外
])
def test_incident_words_heard_as_words_that_sound_like_them(u: ClaimReader, text: str, kind: str) -> None:
    assert values(heard(u, text, "incident_type"))["incident_type"] == kind


def test_only_whole_recognized_words_are_read_as_an_incident_word(u: ClaimReader) -> None:
    assert values(heard(u, "他 不过 是 感冒 看 了 门诊", "incident_type"))["incident_type"] == "门诊"  # 不过 是 ≠ 过世
    assert "incident_type" not in heard(u, "我 爱人 过 是 为 去 脑出血", "incident_type", recognized=False).values or \
        values(heard(u, "我 爱人 过 是 为 去 脑出血", "incident_type", recognized=False))["incident_type"] != "身故"


def test_digits_in_an_id_answer_are_no_incident_word(u: ClaimReader) -> None:
    id_answer = heard(u, "身 份 证 号 是 三 拐 洞 幺 零 两 幺 九 六 勾 幺 洞 一 四 六 两 六 洞", "insured_id_number")
    assert "incident_type" not in id_answer.values  # 勾幺 sounds like 狗咬 (a dog bite)


@pytest.mark.parametrize("text", ["友 科 大 方 不 对", "门 铁"])  # 有个地方不对, 没问题 under the hospital grammar
def test_recognized_words_that_name_no_place_are_no_hospital(u: ClaimReader, text: str) -> None:
    assert "hospital" not in heard(u, text, "hospital").values
    assert values(heard(u, "在 社 区 卫 生 服 务 中 心", "hospital"))["hospital"] == "社区卫生服务中心"


@pytest.mark.parametrize("text", ["部队", "有 个 地方 部队", "有 个 地方 部队 我 叫 因 呀"])
def test_at_the_read_back_a_no_heard_as_words_that_sound_like_it_is_a_no(u: ClaimReader, text: str) -> None:
    assert heard(u, text, "confirm").affirm is False  # 部队 (bu dui) for 不对; it once read as 都对, a yes


def test_a_no_by_sound_only_at_the_read_back(u: ClaimReader) -> None:
    assert heard(u, "在 部 队 医 院", "hospital").affirm is None
    assert heard(u, "都 对", "confirm").affirm is True
