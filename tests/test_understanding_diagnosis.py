"""Diagnosis extraction: the term as said, without filler."""

from __future__ import annotations

from pathlib import Path

import pytest

from speech.understanding.diagnosis import DiagnosisFinder
from speech.understanding.claims import ClaimReader, compact_text

CONFIG = Path(__file__).resolve().parents[1] / "config"


@pytest.fixture(scope="module")
def finder() -> DiagnosisFinder:
    return ClaimReader.from_config(CONFIG).diagnoses


@pytest.mark.parametrize(
    ("text", "diagnosis"),
    [
        ("诊断是急性阑尾炎", "急性阑尾炎"),
        ("医生说是软组织挫伤", "软组织挫伤"),
        ("医生 说 是 软组织 挫伤", "软组织挫伤"),
        ("左腿骨折了", "左腿骨折"),
        ("我女儿在学校摔伤了，左手手腕骨折", "左手手腕骨折"),
        ("肺癌 晚期", "肺癌晚期"),
        ("诊断 是 早期 胃癌", "早期胃癌"),
        ("出了意外，二度烧伤", "二度烧伤"),
        ("住院 了 急性 心肌梗死", "急性心肌梗死"),
        ("医生说是突发心梗", "突发心肌梗死"),  # colloquial 心梗 → the standard term
        ("诊断是脑梗塞", "脑梗塞"),
        ("腰椎间盘 突出", "腰椎间盘突出"),
        ("重症肺炎住院治疗", "重症肺炎"),
        ("诊断是急性化脓性扁桃体炎", "急性化脓性扁桃体炎"),
        ("医生说没什么大事，就是轻微脑震荡", "轻微脑震荡"),
        ("我母亲在中山大学附属第一医院住院，诊断是脑梗塞", "脑梗塞"),
    ],
)
def test_lexicon(finder: DiagnosisFinder, text: str, diagnosis: str) -> None:
    mention = finder.bare(compact_text(text))
    assert mention is not None and mention.value == diagnosis


@pytest.mark.parametrize(
    ("text", "diagnosis"),
    [
        ("诊断是肋软骨炎", "肋软骨炎"),  # not in the lexicon, framed and ends like a disease
        ("医生说是胆管细胞癌", "胆管细胞癌"),
        ("确诊了神经母细胞瘤", "神经母细胞瘤"),
    ],
)
def test_framed_unknown(finder: DiagnosisFinder, text: str, diagnosis: str) -> None:
    mention = finder.framed(compact_text(text))
    assert mention is not None and mention.value == diagnosis


def test_bare_unknown_answer_is_kept_with_low_confidence(finder: DiagnosisFinder) -> None:
    mention = finder.bare(compact_text("医生说是过度劳累"))
    assert mention is not None and mention.value == "过度劳累" and mention.confidence <= 0.5


@pytest.mark.parametrize("text", ["我叫韦文博", "前天晚上", "是我女儿", "在省立医院看的"])
def test_nothing_found(finder: DiagnosisFinder, text: str) -> None:
    assert finder.find(compact_text(text)) == []
    assert finder.framed(compact_text(text)) is None
