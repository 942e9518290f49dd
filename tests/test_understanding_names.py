"""Person names: introductions, relatives in free text, spelled surnames, bare answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from speech.understanding.claims import ClaimReader, compact_text
from speech.understanding.names import ROLE_BARE, ROLE_INSURED, ROLE_SELF, NameFinder

CONFIG = Path(__file__).resolve().parents[1] / "config"


@pytest.fixture(scope="module")
def names() -> NameFinder:
    return ClaimReader.from_config(CONFIG).names


def found(names: NameFinder, text: str) -> list[tuple[str, str]]:
    return [(m.name, m.role) for m in names.find(compact_text(text))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我叫韦文博", [("韦文博", ROLE_SELF)]),
        ("我 叫 韦 文博", [("韦文博", ROLE_SELF)]),  # recognizer spacing
        ("我是谢晓明", [("谢晓明", ROLE_SELF)]),
        ("姓韦，叫韦文博", [("韦文博", ROLE_BARE)]),
        ("姓 贾 叫 贾超", [("贾超", ROLE_BARE)]),
        ("我姓张，叫张伟", [("张伟", ROLE_SELF)]),
        ("姓韦，叫文博", [("韦文博", ROLE_BARE)]),  # only the given name after 叫
        ("我的名字是欧阳娜娜", [("欧阳娜娜", ROLE_SELF)]),
        ("我叫诸葛亮", [("诸葛亮", ROLE_SELF)]),
        ("我女儿叫谢金凤", [("谢金凤", ROLE_INSURED)]),
        ("她 叫 蔡金凤", [("蔡金凤", ROLE_INSURED)]),
        ("我 邻居 叫田 欣怡", [("田欣怡", ROLE_INSURED)]),
        ("出险人是我爸张建国", [("张建国", ROLE_INSURED)]),
        ("被保险人是我父亲张德明，今年六十八岁", [("张德明", ROLE_INSURED)]),
        ("我要报案，我叫韦文博，给我自己报", [("韦文博", ROLE_SELF)]),
        ("我 叫 孔志刚 给 我 爸报", [("孔志刚", ROLE_SELF)]),
    ],
)
def test_introductions(names: NameFinder, text: str, expected: list[tuple[str, str]]) -> None:
    assert found(names, text) == expected


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("我爸张建国昨天因为肺炎住进了华西医院", "张建国"),
        ("我父亲郑娟昨天下午因为急性心肌梗死住院了", "郑娟"),  # a two-character name before 昨天
        ("我 母亲 贺建军前天晚上查出来是早期胃癌", "贺建军"),
        ("我妈韩艳六月十六号因为脑出血去世了", "韩艳"),  # not 韩艳六
        ("我 母亲 方丽 十二月 二十六 号 查出来", "方丽"),  # not 方丽十
        ("我 女儿 许明 三月 二十一 号 确诊", "许明"),
        ("我妈 姜 超前 天 下午 摔了一跤", "姜超"),  # recognizer split 姜超 前天 as 姜 超前 天
        ("我妈 吕老 淑 前天 晚上", "吕老淑"),
        ("我 女儿 侯文博上 礼拜四 出 了 意外", "侯文博"),
        ("我朋友唐志强一号中午出了意外", "唐志强"),
        ("我老婆曹浩然二天前出了意外", "曹浩然"),
        ("我 邻居 韦军 前天 晚上 八点 多出 了 意外", "韦军"),
        ("我丈夫夏海涛三月三十号确诊了肝癌", "夏海涛"),
        ("我爸 邵 志强 上周五 摔了一跤", "邵志强"),
    ],
)
def test_relative_in_free_text(names: NameFinder, text: str, name: str) -> None:
    assert found(names, text) == [(name, ROLE_INSURED)]


@pytest.mark.parametrize(
    "text",
    [
        "我爸查出来是肺癌",  # 查 is a surname, 查出来 is not a name
        "我朋友白血病住院治疗",  # 白 is a surname
        "我妈 高血压 门诊",
        "我女儿出了车祸",
        "我爸 左腿骨折",
        "我妈 全身 都是伤",
        "我爸 支气管炎 住院治疗",
        "我女儿 明天 出院",
        "我 老公 因为 脑出血 去世 了",
        "我爸在华西医院住院",
        "我是他儿子",
        "我是本人",
    ],
)
def test_no_name(names: NameFinder, text: str) -> None:
    assert found(names, text) == []


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("弓长张，张伟", "张伟"),
        ("姓弓长张，叫张伟", "张伟"),
        ("我姓立早章，叫章子怡", "章子怡"),
        ("木子李的李，李华", "李华"),
        ("耳东陈 陈晨", "陈晨"),
        ("口天吴，吴磊", "吴磊"),
        ("双木林，林峰", "林峰"),
        ("古月胡，胡歌", "胡歌"),
        ("草头黄，黄磊", "黄磊"),
        ("言午许，许晴", "许晴"),
        ("三点水的汪，汪峰", "汪峰"),
        ("文章的章，章子怡", "章子怡"),
        ("立早章，张子怡", "章子怡"),  # the spelled surname fixes a homophone (张/章)
    ],
)
def test_spelled_surnames(names: NameFinder, text: str, name: str) -> None:
    mentions = names.find(compact_text(text))
    bare = names.bare(compact_text(text))
    assert (mentions and mentions[-1].name == name) or (bare is not None and bare.name == name)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("韦文博", "韦文博"),
        ("韦 文博", "韦文博"),
        ("就是我，韦文博", "韦文博"),
        ("就是 我 梁勇", "梁勇"),
        ("范伟", "范伟"),
        ("上官婉儿", "上官婉儿"),
        ("免贵姓李，李四", "李四"),
        ("嗯，刘磊吧", "刘磊"),
    ],
)
def test_bare_answers(names: NameFinder, text: str, name: str) -> None:
    mention = names.bare(compact_text(text))
    assert mention is not None and mention.name == name


def test_bare_answer_with_an_unlisted_surname_has_low_confidence(names: NameFinder) -> None:
    mention = names.bare("枋文博")
    assert mention is not None and mention.name == "枋文博" and mention.confidence < 0.8


def test_bare_answer_that_is_not_a_name(names: NameFinder) -> None:
    assert names.bare(compact_text("我不知道他叫什么名字啊")) is None or names.bare("我不知道").confidence < 0.8


# --- what may be a person's name -----------------------------------------------------------
from speech.understanding.names import name_problem  # noqa: E402


@pytest.mark.parametrize("value", ["公元前一万年", "三月五号", "一百二十", "下午三点", "北京市", "住院部",
                                   "王", "张三丰李四", "王2芳", "二零二四年", "昨天下午", "李·"])
def test_values_that_are_no_names_are_refused(value: str) -> None:
    assert name_problem(value) is not None


@pytest.mark.parametrize("value", ["王芳", "欧阳娜娜", "买买提·艾力", "司马光", "王一博", "张三", "王一一",
                                   "阿依古丽·买买提", "诸葛孔明"])
def test_real_names_pass(value: str) -> None:
    assert name_problem(value) is None
