"""Relationship and incident-type classification from the keyword lexicons."""

from __future__ import annotations

from pathlib import Path

import pytest

from speech.understanding.classify import IncidentClassifier, RelationshipClassifier, load_yaml

DICTS = Path(__file__).resolve().parents[1] / "config" / "dictionaries"


@pytest.fixture(scope="module")
def relationships() -> RelationshipClassifier:
    return RelationshipClassifier(load_yaml(DICTS / "relationships.yaml"))


@pytest.fixture(scope="module")
def incidents() -> IncidentClassifier:
    return IncidentClassifier(load_yaml(DICTS / "incident_types.yaml"))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("我爸", "父母"),
        ("出险的是我妈", "父母"),
        ("是我父亲", "父母"),
        ("我老爸住院了", "父母"),
        ("我母亲", "父母"),
        ("我儿子", "子女"),
        ("是我女儿", "子女"),
        ("我孩子", "子女"),
        ("我闺女", "子女"),
        ("我老公", "配偶"),
        ("是我老婆", "配偶"),
        ("我丈夫", "配偶"),
        ("我妻子", "配偶"),
        ("我爱人", "配偶"),
        ("本人", "本人"),
        ("就是我本人", "本人"),
        ("是我自己", "本人"),
        ("给我自己报", "本人"),
        ("就是我", "本人"),
        ("我朋友", "其他"),
        ("我同事", "其他"),
        ("是我邻居", "其他"),
        ("我哥哥", "其他"),
        ("我姐", "其他"),
        ("我弟弟", "其他"),
        ("我妹妹", "其他"),
        ("一个亲戚", "其他"),
        ("我岳父", "其他"),  # the caller's parent-in-law is not the caller's parent
        ("我婆婆", "其他"),
        ("我爷爷", "其他"),
        ("就是我爸", "父母"),  # a relative named after 就是我 wins
        ("我爸的朋友", "其他"),  # the last of a possessive chain
        ("我是他儿子", "父母"),  # the caller names themself: inverse
        ("我是她女儿", "父母"),
        ("我是他爸爸", "子女"),
        ("我是他老婆", "配偶"),
    ],
)
def test_relationship(relationships: RelationshipClassifier, text: str, value: str) -> None:
    found = relationships.classify(text)
    assert found is not None and found.value == value


@pytest.mark.parametrize("text", ["就是我的手机号", "我自己的电话", "在华西医院", "三天前", "我叫韦文博"])
def test_no_relationship(relationships: RelationshipClassifier, text: str) -> None:
    assert relationships.classify(text) is None


def test_relationship_by_sound(relationships: RelationshipClassifier) -> None:
    # the recognizer wrote 吧 for 爸, 吗 for 妈
    assert relationships.classify_by_sound("是我吧").value == "父母"
    assert relationships.classify_by_sound("我吗").value == "父母"
    assert relationships.classify_by_sound("问我") is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("我父亲不幸去世了是肺癌晚期", "身故"),
        ("人走了突发心梗", "身故"),
        ("我爸走了", "身故"),
        ("车祸去世了", "身故"),  # death takes precedence over everything
        ("确诊了白血病", "重疾"),
        ("得了早期胃癌", "重疾"),
        ("查出来是恶性肿瘤", "重疾"),
        ("我朋友得了淋巴瘤", "重疾"),
        ("出了意外，软组织挫伤", "意外"),
        ("摔了一跤右手骨折", "意外"),
        ("出了车祸轻微脑震荡", "意外"),
        ("被车撞了", "意外"),
        ("左腿骨折住院了", "意外"),  # an injury is 意外 whatever the treatment
        ("烫伤了去看门诊", "意外"),
        ("住院了急性心肌梗死", "住院"),  # heart attack framed as a hospital stay
        ("因为脑梗塞住院了", "住院"),
        ("肺炎住院治疗", "住院"),
        ("我爸住进了医院", "住院"),
        ("就是看门诊扁桃体炎", "门诊"),
        ("门诊看病高血压", "门诊"),
        ("去看了门诊，胃炎", "门诊"),
        ("看了病没住院", "门诊"),
        ("急诊", "门诊"),
        ("突发心梗", "重疾"),  # a heart attack with no stay mentioned
    ],
)
def test_incident_type(incidents: IncidentClassifier, text: str, value: str) -> None:
    found = incidents.classify(text)
    assert found is not None and found.value == value


def test_bare_illness_is_not_a_type_when_another_slot_was_asked(incidents: IncidentClassifier) -> None:
    # "医生说是突发心梗" answers the diagnosis; the caller may have said 身故 before
    assert incidents.classify("医生说是突发心梗", allow_weak=False) is None
    assert incidents.classify("骨折", allow_weak=False) is None
    assert incidents.classify("诊断是肺癌晚期", allow_weak=False) is None
    # framing words still count
    assert incidents.classify("出了意外，烧伤", allow_weak=False).value == "意外"
    assert incidents.classify("确诊了白血病", allow_weak=False).value == "重疾"
    assert incidents.classify("住院了，肺炎", allow_weak=False).value == "住院"


def test_no_incident(incidents: IncidentClassifier) -> None:
    assert incidents.classify("我叫韦文博") is None
    assert incidents.classify("肺炎") is None  # 住院 or 门诊: not said
