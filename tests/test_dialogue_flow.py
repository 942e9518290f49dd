"""Flow files: loading, validation errors that name file and key, formats, and a second flow run as data."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from speech.dialogue.actions import Report
from speech.dialogue.engine import Dialogue
from speech.dialogue.flow import FlowError, load_flow, load_flows, render
from speech.understanding.types import CallContext, Extraction, SlotProblem, SlotValue

FLOWS = Path(__file__).resolve().parents[1] / "config" / "flows"
CLAIM = FLOWS / "claim_report.yaml"


def claim_raw() -> dict:
    return yaml.safe_load(CLAIM.read_text(encoding="utf-8"))


def write(tmp_path: Path, raw: dict, name: str = "broken.yaml") -> Path:
    """The flow, written elsewhere: its `hints_files` and format tables (relative to the flow file)
    made absolute."""
    for item in raw.get("slots") or ():
        if isinstance(item, dict) and isinstance(item.get("hints_files"), list):
            item["hints_files"] = [str((FLOWS / f).resolve()) for f in item["hints_files"]]
    for fmt in (raw.get("formats") or {}).values():
        if isinstance(fmt, dict) and isinstance(fmt.get("prefixes"), str):
            fmt["prefixes"] = str((FLOWS / fmt["prefixes"]).resolve())
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_the_shipped_flows_load() -> None:
    flows = load_flows(FLOWS)
    assert {"claim_report", "claim_status_callback"} <= set(flows)
    claim = flows["claim_report"]
    assert set(claim.slot_names) == {
        "reporter_name", "reporter_phone", "relationship", "insured_name", "insured_id_number",
        "incident_date", "incident_type", "hospital", "diagnosis",
    }
    assert claim.slot("insured_name").derive.source_slot == "reporter_name"
    assert claim.slot("insured_id_number").dtmf.star == "X"
    assert claim.slot("reporter_phone").default == "caller_number"
    assert claim.confirm.dtmf_yes == "1"
    for spec in claim.slots:
        assert spec.prompts and all(p.strip() for p in spec.prompts)
    for code in ("id_checksum", "id_length", "id_birth_date"):
        assert code in claim.slot("insured_id_number").problems
    assert "phone_format" in claim.slot("reporter_phone").problems
    assert "date_future" in claim.slot("incident_date").problems


def mutate(raw: dict, path: str, value) -> dict:
    """Set raw[path] (dotted; [i] for list items, [name] for the slot of that name); None deletes."""
    node = raw
    parts = path.replace("]", "").replace("[", ".").split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            node = next(s for s in node if s.get("name") == part) if not part.isdigit() else node[int(part)]
        else:
            node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is None:
        del node[last]
    else:
        node[last] = value
    return raw


@pytest.mark.parametrize(
    "path, value, expected",
    [
        ("slots", None, "slots: missing"),
        ("greeting", ["x"], "greeting: expected text, got a list"),
        ("slots[reporter_name].promts", ["x"], "slots[0](reporter_name).promts: unknown key"),
        ("slots[reporter_name].prompts", [], "slots[0](reporter_name).prompts: expected a non-empty list"),
        ("slots[insured_id_number].dtmf.after", "two", "slots[1](insured_id_number).dtmf.after: expected an integer"),
        ("slots[hospital].readback", "在{hosptial}就诊", "placeholder {hosptial} names no slot"),
        ("slots[incident_date].readback", "{incident_date:dat}出险", "{incident_date:dat} names no format"),
        ("slots[insured_name].derive.from", "reporter", "slots[2](insured_name).derive.from: names no other slot"),
        ("slots[insured_name].derive.when", {"relation": "本人"}, "derive.when.relation: names no slot"),
        ("slots[reporter_phone].default", "record", "default: unknown default 'record'"),
        ("records.take.insured_name", "name", "records.take.insured_name: no such record field 'name'"),
        ("records.query.name", "insured", "records.query.name: names no slot of this flow: 'insured'"),
        ("records.holder.same_person", {"holder": "reporter_name"}, "records.holder.same_person.holder: no such record field"),
        ("records.holder.suggest", {"reporter_phone": "mobile"}, "records.holder.suggest.reporter_phone: no such record field"),
        ("records.holder", {"suggest": {"reporter_phone": "phone"}}, "records.holder.same_person: missing"),
        ("confirm.changed", "好的。", "confirm.changed: must contain {changes}"),
        ("confirm.order", ["reporter_name"], "confirm.order: leaves out"),
        ("closing", [{"when": {"incident_type": "身故"}, "text": "节哀"}], "closing: the last text must have no `when`"),
        ("formats.id_digits.words", "0123", "formats.id_digits.words: expected ten digit words"),
        ("limits.max_turns", 0, "limits.max_turns: expected an integer >= 2"),
        ("name", "Claim Report", "name: use lower case letters"),
        ("slots[0].name", "insured_name", "slots[2].name: slot 'insured_name' is defined twice"),
        ("confirm.dtmf", {"ok": 1, "deny": 2}, "confirm.dtmf.ok: unknown key (known: affirm, deny)"),
    ],
)
def test_validation_errors_name_the_file_and_the_key(tmp_path: Path, path: str, value, expected: str) -> None:
    target = write(tmp_path, mutate(claim_raw(), path, value))
    with pytest.raises(FlowError) as info:
        load_flow(target)
    message = str(info.value)
    assert message.startswith(f"{target}: "), message
    assert expected in message, message


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(FlowError, match="cannot read"):
        load_flow(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed", encoding="utf-8")
    with pytest.raises(FlowError, match="bad.yaml: not valid YAML"):
        load_flow(bad)
    bad.write_text("- just a list", encoding="utf-8")
    with pytest.raises(FlowError, match=r"bad.yaml: \(top\): expected a mapping"):
        load_flow(bad)


def test_yes_no_keys_read_as_booleans_are_explained(tmp_path: Path) -> None:
    text = CLAIM.read_text(encoding="utf-8").replace("dtmf: {affirm: 1, deny: 2}", "dtmf: {yes: 1, no: 2}")
    text = text.replace("../dictionaries/", f"{FLOWS.parent / 'dictionaries'}/")  # written elsewhere
    assert "{yes: 1, no: 2}" in text
    path = tmp_path / "yesno.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FlowError, match=r"yesno.yaml: confirm.dtmf: keys must be text, got True \(YAML reads yes/no"):
        load_flow(path)


def test_two_files_with_one_flow_name(tmp_path: Path) -> None:
    write(tmp_path, claim_raw(), "a.yaml")
    write(tmp_path, claim_raw(), "b.yaml")
    with pytest.raises(FlowError, match="b.yaml: name: flow 'claim_report' is also defined in"):
        load_flows(tmp_path)


def test_formats() -> None:
    flow = load_flow(CLAIM)
    f = flow.formats
    values = {"insured_id_number": "11010119800101001X", "reporter_phone": "13812345678",
              "incident_date": "2026-03-05", "relationship": "父母"}
    assert render("{insured_id_number:id_digits}", values, f) == "幺幺零 幺零幺 幺九八零 零幺零幺 零零幺叉"
    assert render("{insured_id_number:tail4}", values, f) == "零零幺叉"
    assert render("{reporter_phone:phone_digits}", values, f) == "幺三八 幺二三四 五六七八"
    assert render("{reporter_phone:phone_digits}", {"reporter_phone": "010-12345678"}, f) == "零幺零 幺二三四五六七八"
    assert render("{incident_date:day}", values, f, date(2026, 3, 19)) == "3月5日"
    assert render("{incident_date:day}", values, f, date(2027, 1, 2)) == "2026年3月5日"
    assert render("出险人是{relationship:relation}", values, f) == "出险人是您的父亲或母亲"
    assert render("{missing}{relationship}", values, f) == "父母"


# ---------------------------------------------------------------- the second flow, as data only


class Scripted:
    def __init__(self, script: dict[str, Extraction]) -> None:
        self.script = script

    def extract(self, text: str, context: CallContext) -> Extraction:
        return self.script.get(text, Extraction())


def test_second_flow_runs() -> None:
    flow = load_flow(FLOWS / "claim_status_callback.yaml")
    script = {
        "我叫李明": Extraction(values={"reporter_name": SlotValue("reporter_name", "李明")}),
        "坏的": Extraction(problems={"insured_id_number": SlotProblem("insured_id_number", "id_checksum")}),
        "11010119800101001X": Extraction(values={"insured_id_number": SlotValue("insured_id_number", "11010119800101001X")}),
        "就打这个号": Extraction(use_caller_number=True),
        "对": Extraction(affirm=True),
    }
    ctx = CallContext(datetime(2026, 3, 19, 10, 0, tzinfo=timezone(timedelta(hours=8))), "13812345678")
    d = Dialogue(flow, Scripted(script), ctx)
    first = d.start()[0]
    assert first.slot == "reporter_name" and first.text.startswith(flow.greeting)
    assert d.on_text("我叫李明")[0].slot == "insured_id_number"
    keypad = d.on_text("坏的")[0]
    assert keypad.slot == "insured_id_number" and keypad.dtmf  # this flow offers the keypad at once
    assert d.on_dtmf("11010119800101001*")[0].slot == "reporter_phone"
    readback = d.on_text("就打这个号")[0]
    assert readback.slot == "confirm"
    assert readback.text == "好的，跟您确认：李明，身份证尾号零零幺叉，回电号码幺三八 幺二三四 五六七八。对吗？"
    report, closing, hangup = d.on_text("对")
    assert isinstance(report, Report) and report.status == "complete" and report.flow == "claim_status_callback"
    assert report.slots == {"reporter_name": "李明", "insured_id_number": "11010119800101001X",
                            "reporter_phone": "13812345678"}
    assert report.details["insured_id_number"].source == "dtmf"
    assert closing.text == flow.closing[0].text and d.finished


# ---------------------------------------------------------------- vocabularies for voice (hints, rechecks)


def test_the_shipped_claim_flow_listens_with_grammars() -> None:
    claim = load_flow(CLAIM)
    assert claim.start_hints is False  # the opening may be the whole story
    names = claim.slot("reporter_name").hints
    assert names is not None and {"我叫", "韦", "张", "建国", "慧"} <= set(names)
    assert claim.slot("insured_name").hints == names
    assert claim.slot("reporter_name").recheck and claim.slot("reporter_name").recheck_below is None
    assert claim.slot("hospital").recheck_below == 0.8
    assert "北京协和医院" in claim.slot("hospital").hints and "北京" in claim.slot("hospital").hints
    assert "本人" in claim.slot("relationship").hints and "前天" in claim.slot("incident_date").hints
    digits = claim.slot("insured_id_number").hints
    assert "十" not in digits and "一一" in digits and any(len(h) > 100 for h in digits)
    assert claim.records.sounds_like == {"reporter_name": ("insured_name", "holder_name"),
                                         "insured_name": ("insured_name",)}
    incident = claim.slot("incident_type").hints
    assert incident is not None and {"去世", "过世", "住院", "骨折", "爱人", "医生"} <= set(incident)
    assert not any("(" in h or "|" in h for h in incident)  # incident_types.yaml's patterns are no phrases
    assert claim.slot("diagnosis").hints == incident
    assert claim.records.holder_rule is not None
    assert claim.records.holder_rule.same_person == {"holder_name": "reporter_name"}
    assert claim.records.holder_rule.suggest == {}  # the records' phone is the insured's


def test_hints_files_text_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("# a comment\n甲\n\n乙\n", encoding="utf-8")
    (tmp_path / "words.yaml").write_text("a: [丙, {b: 丁}]\nc: 戊\n", encoding="utf-8")
    raw = claim_raw()
    slot = next(s for s in raw["slots"] if s["name"] == "hospital")
    slot["hints"] = ["甲", "己"]
    slot["hints_files"] = [str(tmp_path / "words.txt"), str(tmp_path / "words.yaml")]
    slot["recheck"] = "再说一下医院。"
    flow = load_flow(write(tmp_path, raw, "ok.yaml"))
    assert flow.slot("hospital").hints == ("甲", "己", "乙", "丙", "丁", "戊")
    assert flow.slot("hospital").recheck == "再说一下医院。" and flow.slot("hospital").recheck_below is None


@pytest.mark.parametrize("path, value, expected", [
    ("slots[hospital].recheck", "再说一遍。", "slots[7](hospital).recheck: needs `hints`"),
    ("slots[reporter_name].hints_files", ["nope.txt"], "slots[0](reporter_name).hints_files[0]: cannot read"),
    ("slots[reporter_name].recheck", {"say": "再说", "below": 2}, "recheck.below: expected a confidence"),
    ("records.sounds_like", {"reporter_name": ["name"]}, "records.sounds_like.reporter_name: no such record field"),
    ("start_hints", "no", "start_hints: expected true or false"),
])
def test_voice_keys_are_validated(tmp_path: Path, path: str, value, expected: str) -> None:
    raw = mutate(claim_raw(), path, value)
    if path.startswith("slots[hospital]"):
        next(s for s in raw["slots"] if s["name"] == "hospital").pop("hints_files", None)
    with pytest.raises(FlowError) as info:
        load_flow(write(tmp_path, raw))
    assert expected in str(info.value)
