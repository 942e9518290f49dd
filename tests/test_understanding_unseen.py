"""Ways of saying a slot that the dev callers never used (issue 13): each case is a kind of
phrasing Mandarin speakers use, not one caller's words; and the caller generator's own checks."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from speech.understanding.claims import ClaimReader, compact_text
from speech.understanding.classify import IncidentClassifier, RelationshipClassifier, load_yaml
from speech.understanding.idcard import id_problem

ROOT = Path(__file__).resolve().parents[1]
DICTS = ROOT / "config" / "dictionaries"


@pytest.fixture(scope="module")
def reader() -> ClaimReader:
    return ClaimReader.from_config(ROOT / "config")


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("曾，曾亮", "曾亮"),  # the surname alone, then the full name
        ("曾 曾珍娟", "曾珍娟"),  # the same, recognizer-spaced
        ("欧阳，欧阳娜娜", "欧阳娜娜"),
        ("啊 杨 杨冬", "杨冬"),  # the same after a filler, spaced: was 杨杨冬
        ("呃 曾 曾珍娟", "曾珍娟"),
        ("嗯，我叫曾，曾亮", "曾亮"),
        ("就是，徐平卫，平卫是名字", "徐平卫"),  # the given name explained
        ("段 诗 诗是 名字", "段诗"),  # spaced: the given name said twice, glued to 是名字
        ("边晨，晨是名字", "边晨"),
        ("边晨晨，晨晨是名字", "边晨晨"),  # a reduplicated given name stays whole
        ("段诗诗", "段诗诗"),
        ("商莉平 平安 的 平", "商莉平"),  # one character explained by a word it is in
        ("王芳，芳是芬芳的芳", "王芳"),
        ("是 这样 的 尚安薇", "尚安薇"),  # fillers before the name
        ("啊 汤婷浩 婷 浩 是 名字", "汤婷浩"),
    ],
)
def test_a_name_said_with_its_explanation_is_the_name_once(reader: ClaimReader, text: str, name: str) -> None:
    found = reader.names.bare(compact_text(text))
    assert found is not None and found.name == name


def test_just_me_before_a_name_is_not_the_relationship() -> None:
    relationships = RelationshipClassifier(load_yaml(DICTS / "relationships.yaml"))
    assert relationships.classify(compact_text("就是 我姓 汤 叫 汤婷浩")) is None
    assert relationships.classify(compact_text("错了，就是 我 是 蒋秋")) is None  # "就是，我是蒋秋": a name
    assert relationships.classify(compact_text("就是我，是我出的事")).value == "本人"
    assert relationships.classify("就是我").value == "本人"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("我表哥因为急性胰腺炎在医院住了五天", "住院"),  # a stay by its length
        ("我父亲脑梗，住了一个星期院", "住院"),
        ("心衰，住了半个月院", "住院"),
        ("因为胃出血现在还在医院住着", "住院"),
        ("得了肺炎进了住院部", "住院"),
        ("肺炎，办了住院", "住院"),
        ("我媳妇走了，心脏骤停", "身故"),  # a person, then 走了
        ("我姐 走 了 脑出血", "身故"),
        ("开了点药就走了", None),  # leaving is not dying
        ("肺炎，没住院，开了点药", "门诊"),
    ],
)
def test_incident_type_without_its_keyword(text: str, kind: str | None) -> None:
    found = IncidentClassifier(load_yaml(DICTS / "incident_types.yaml")).classify(compact_text(text))
    assert (found.value if found else None) == kind


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("在郑州市第二人民医院", "郑州市第二人民医院"),  # never another city's hospital by sound
        ("在 佛山市 中心医院", "佛山市中心医院"),  # a name every city has, kept as said
        ("在 南京市 骨科 医院", "南京市骨科医院"),
        ("在鞋和医院", "北京协和医院"),  # a recognizer homophone still matches
        ("在深圳市第二人民医院", "深圳市第二人民医院"),
    ],
)
def test_local_hospitals_keep_their_city(reader: ClaimReader, text: str, value: str) -> None:
    found = reader.hospitals.find(compact_text(text), reader._hospital_stop_re)
    assert found and found[0].value == value


def test_diagnosis_terms_said_together_are_one_diagnosis(reader: ClaimReader) -> None:
    diagnoses = reader.diagnoses
    assert [m.value for m in diagnoses.find("医生说是感冒发烧")] == ["感冒发烧"]
    assert [m.value for m in diagnoses.find("高血压，糖尿病")] == ["高血压", "糖尿病"]


def test_generated_callers_are_valid_and_differ_by_seed(tmp_path: Path) -> None:
    runs = {}
    for seed in (1, 2):
        out = tmp_path / str(seed)
        subprocess.run([sys.executable, str(ROOT / "bench" / "gen_callers.py"), str(out), "--callers", "40",
                        "--seed", str(seed), "--distractors", "10"], check=True, capture_output=True)
        runs[seed] = [json.loads(line) for line in (out / "callers.jsonl").read_text(encoding="utf-8").splitlines()]
        policies = (out / "policies.csv").read_text(encoding="utf-8")
        for caller in runs[seed]:
            gold = caller["gold"]
            assert id_problem(gold["insured_id_number"], date(2026, 12, 1)) is None
            assert gold["insured_id_number"] in policies  # every insured person has a record
            assert gold["incident_date"] < caller["started_at"][:10]
            assert (gold["relationship"] == "本人") == (gold["insured_name"] == gold["reporter_name"])
            assert all(caller["answers"][slot] for slot in gold)
    assert [c["gold"] for c in runs[1]] != [c["gold"] for c in runs[2]]


def test_openings_mixed_change_only_the_openings(tmp_path: Path) -> None:
    callers = {}
    for openings in ("mixed", "greeting"):
        out = tmp_path / openings
        subprocess.run([sys.executable, str(ROOT / "bench" / "gen_callers.py"), str(out), "--callers", "60",
                        "--seed", "5", "--distractors", "10", "--openings", openings],
                       check=True, capture_output=True)
        lines = (out / "callers.jsonl").read_text(encoding="utf-8").splitlines()
        callers[openings] = [json.loads(line) for line in lines]
    for mixed, greeting in zip(callers["mixed"], callers["greeting"]):
        assert {k: v for k, v in mixed.items() if k != "opening"} == {
            k: v for k, v in greeting.items() if k != "opening"}
        assert "报" in greeting["opening"]  # every caller greets first
    openings = [c["opening"] for c in callers["mixed"]]
    assert None in openings  # some answer the first question straight away
    hospitals = [c["answers"]["hospital"][1].replace(" ", "") for c in callers["mixed"]]
    assert any(o and h in o.replace(" ", "") for o, h in zip(openings, hospitals))  # some tell it all


def test_a_no_led_by_where_is_a_correction_and_who_is_no_name(reader: ClaimReader) -> None:
    from datetime import datetime, timedelta, timezone

    from speech.understanding.types import CallContext

    ctx = CallContext(started_at=datetime(2026, 3, 19, 10, 0, tzinfo=timezone(timedelta(hours=8))),
                      caller_number="15400000000", expected_slot="confirm")
    fix = reader.extract("有个地方不对，冯 飞", ctx)
    assert fix.affirm is False and fix.correction and fix.values["reporter_name"].value == "冯飞"
    opening = reader.extract("我要报案，我爸过世了，是多器官衰竭", replace_slot(ctx, "reporter_name"))
    assert "reporter_name" not in opening.values  # 爸过世 is no name
    assert opening.values["incident_type"].value == "身故"
    hurt = reader.extract("干活 的 时候 不 小心 弄成 了 头皮 裂伤", replace_slot(ctx, "incident_type"))
    assert hurt.values["incident_type"].value == "意外" and hurt.values["diagnosis"].value == "头皮裂伤"


def replace_slot(ctx, slot: str):
    import dataclasses

    return dataclasses.replace(ctx, expected_slot=slot)
