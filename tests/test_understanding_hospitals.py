"""Hospital mentions against the directory, with homophones from the recognizer."""

from __future__ import annotations

import os
import json
from pathlib import Path

import pytest

from speech.understanding.claims import ClaimReader, compact_text
from speech.understanding.hospitals import HospitalDirectory

ROOT = Path(__file__).resolve().parents[1]
EVAL = Path(os.environ.get("GATEWAY_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared")) / "eval"


@pytest.fixture(scope="module")
def understanding() -> ClaimReader:
    return ClaimReader.from_config(ROOT / "config")


@pytest.fixture(scope="module")
def directory(understanding: ClaimReader) -> HospitalDirectory:
    return understanding.hospitals


def value(understanding: ClaimReader, text: str, *, bare: bool = False) -> str | None:
    compact = compact_text(text)
    if bare:
        m = understanding.hospitals.bare(compact, understanding._hospital_stop_re)
        return m.value if m else None
    found = understanding.hospitals.find(compact, understanding._hospital_stop_re)
    return found[0].value if found else None


def test_directory_size(directory: HospitalDirectory) -> None:
    assert len(directory.hospitals) >= 100


@pytest.mark.skipif(not (EVAL / "claim_dev.jsonl").exists(), reason="shared eval data not present")
def test_directory_covers_every_dev_hospital(directory: HospitalDirectory) -> None:
    for line in (EVAL / "claim_dev.jsonl").read_text(encoding="utf-8").splitlines():
        persona = json.loads(line)
        gold = persona["gold"]["hospital"]
        assert directory.lookup(gold) == (gold, True), gold


@pytest.mark.parametrize(
    ("text", "hospital"),
    [
        ("在北京协和医院", "北京协和医院"),
        ("协和医院看的", "北京协和医院"),
        ("在 复旦 中山 医院", "复旦大学附属中山医院"),
        ("北大 一院", "北京大学第一医院"),
        ("在 郑大一 附院", "郑州大学第一附属医院"),
        ("重医 附一院 看 的", "重庆医科大学附属第一医院"),
        ("在上海瑞金医院", "上海交通大学医学院附属瑞金医院"),
        ("武汉 同济 医院", "华中科技大学同济医学院附属同济医院"),
        ("我在成都华西医院做了手术", "四川大学华西医院"),
        ("深圳 人民 医院", "深圳市人民医院"),
        ("北京301医院", "中国人民解放军总医院"),
        ("因为肺炎住进了华西医院", "四川大学华西医院"),
        ("住院 了 急性 心肌梗死 在 西京医院", "空军军医大学西京医院"),
        ("中山一院", "中山大学附属第一医院"),  # not 中山医院, though it sounds the same
        ("中山医院", "复旦大学附属中山医院"),
        # homophones from the recognizer
        ("鞋和医院", "北京协和医院"),
        ("在 华溪 医院", "四川大学华西医院"),
        ("在 深圳 是 人民医院", "深圳市人民医院"),
        ("省力 医院", "省立医院"),  # a name every province has: corrected, not mapped
    ],
)
def test_directory_matches(understanding: ClaimReader, text: str, hospital: str) -> None:
    assert value(understanding, text) == hospital


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("在省立医院", "省立医院"),  # which province's? keep as said
        ("省人民医院看的", "省人民医院"),
        ("第六人民医院", "第六人民医院"),
        ("在佛山市第一人民医院", "佛山市第一人民医院"),  # not in the directory
        ("在我们县人民医院", "县人民医院"),
        ("在佛山同仁医院", "佛山同仁医院"),  # not Beijing's 同仁医院
        ("南京市第二医院", "南京市第二医院"),  # sounds like 南京市第一医院, but the number differs
        ("在镇卫生院", "镇卫生院"),
        ("在阳光社区卫生服务中心", "阳光社区卫生服务中心"),
    ],
)
def test_kept_as_said(understanding: ClaimReader, text: str, said: str) -> None:
    assert value(understanding, text) == said


@pytest.mark.parametrize(
    ("text", "hospital"),
    [("协和", "北京协和医院"), ("在华西", "四川大学华西医院"), ("就在湘雅", "中南大学湘雅医院"), ("红房子医院", "复旦大学附属妇产科医院")],
)
def test_short_names_when_asked(understanding: ClaimReader, text: str, hospital: str) -> None:
    assert value(understanding, text, bare=True) == hospital


@pytest.mark.parametrize("text", ["去医院看了", "在医院", "住院了", "我叫韦文博", "大医院"])
def test_no_hospital(understanding: ClaimReader, text: str) -> None:
    assert value(understanding, text) is None


@pytest.mark.parametrize(
    ("text", "hospital"),
    [
        ("我上礼拜四出了车祸，扭伤，在北京协和", "北京协和医院"),  # an alias without 医院
        ("你好 我要 报案 我 昨天 出 了 车祸 在 北京同仁", "首都医科大学附属北京同仁医院"),
        ("我爸在华西住的院，肺炎", "四川大学华西医院"),  # a short name right after 在
    ],
)
def test_names_without_suffix_in_free_text(understanding: ClaimReader, text: str, hospital: str) -> None:
    assert value(understanding, text) == hospital


def test_short_name_needs_context_in_free_text(understanding: ClaimReader) -> None:
    assert value(understanding, "华西坝那边的小区") is None


def test_a_city_and_zhongyiyuan_is_that_citys_hospital_not_a_directory_name(understanding: ClaimReader) -> None:
    # "武汉市中医院" was matched by sound to 武汉大学中南医院
    assert value(understanding, "在武汉市中医院") == "武汉市中医院"
    assert value(understanding, "在武汉市中医院", bare=True) == "武汉市中医院"
