"""Policy records: the tolerant in-memory index and the CSV reader (on the shared evaluation file)."""

from __future__ import annotations

import os
import json
from datetime import date
from pathlib import Path

import pytest

from speech.dialogue.records import PolicyCsvError, PolicyRecord, RecordIndex, edit_distance, load_policies_csv

SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared")) / "eval"
POLICIES = SHARED / "policies_dev.csv"


def rec(policy: str, insured: str, id_number: str, phone: str, holder: str | None = None) -> PolicyRecord:
    return PolicyRecord(policy, "住院医疗", holder or insured, insured, id_number, phone,
                        date(2025, 1, 1), date(2026, 1, 1))


HAN = rec("P1", "韩慧", "110101195705157707", "13900001111", holder="韩强")
LI = rec("P2", "李明", "11010119800101001X", "13800002222")
NEIGHBOUR = rec("P3", "王芳", "110101195705157717", "13700003333")  # one digit away from HAN
INDEX = RecordIndex([HAN, LI, NEIGHBOUR])


def test_exact_id() -> None:
    assert INDEX.find("110101195705157707", None, None) == [HAN]
    assert INDEX.find("11010119800101001x", None, None) == [LI]  # x in either case


def test_near_id_needs_name_or_phone_to_agree() -> None:
    one_off = "110101195705157706"  # one digit misrecognized; also one off NEIGHBOUR's
    assert INDEX.find(one_off, None, None) == []
    assert INDEX.find(one_off, None, "韩慧") == [HAN]
    assert INDEX.find(one_off, None, "韩强") == [HAN]  # the holder's name agrees too
    assert INDEX.find(one_off, "13700003333", None) == [NEIGHBOUR]
    two_off = "110101195705157600"
    assert INDEX.find(two_off, None, "韩慧") == [HAN]
    assert INDEX.find("110101195705150000", None, "韩慧") == []  # three off: too far
    assert INDEX.find("11010119570515770", None, "韩慧") == [HAN]  # a digit dropped
    assert INDEX.find("1101011957051577078", None, "韩慧") == [HAN]  # a digit too many


def test_phone() -> None:
    assert INDEX.find(None, "13800002222", None) == [LI]
    assert INDEX.find(None, "138 0000 2222", None) == [LI]
    assert INDEX.find(None, "13800009999", None) == []
    shared = RecordIndex([LI, rec("P4", "李父", "110101195001010011", "13800002222", holder="李明")])
    assert len(shared.find(None, "13800002222", None)) == 2
    assert shared.find(None, "13800002222", "李父")[0].policy_number == "P4"  # narrowed by the name


def test_unknown_id_falls_back_to_phone_and_a_name_alone_matches_nothing() -> None:
    assert INDEX.find("310115201102157978", "13800002222", None) == [LI]
    assert INDEX.find(None, None, "李明") == []
    assert INDEX.find(None, None, None) == []


def test_edit_distance() -> None:
    assert edit_distance("abc", "abc") == 0
    assert edit_distance("abc", "abd") == 1
    assert edit_distance("abc", "ab") == 1
    assert edit_distance("abcdef", "badcfe", limit=2) == 3  # capped at limit + 1


def test_csv_reader_errors(tmp_path: Path) -> None:
    bad = tmp_path / "p.csv"
    bad.write_text("policy_number,insured_name\nP1,李明\n", encoding="utf-8")
    with pytest.raises(PolicyCsvError, match="p.csv: header lacks product"):
        load_policies_csv(bad)
    header = "policy_number,product,holder_name,insured_name,insured_id_number,phone,start_date,expiry_date\n"
    bad.write_text(header + "P1,x,李明,李明,11010119800101001X,13800002222,2025-13-01,2026-01-01\n", encoding="utf-8")
    with pytest.raises(PolicyCsvError, match="p.csv:2:"):
        load_policies_csv(bad)


def test_shared_policies_load_and_every_dev_caller_is_found() -> None:
    # speed is measured by bench/policy_index.py, not here: these machines vary 2-3x
    records = load_policies_csv(POLICIES)
    index = RecordIndex(records)
    assert len(records) == 5200 and len(index) == 5200
    assert records[0].policy_number == "P286494232779" and records[0].start_date == date(2023, 9, 9)

    callers = [json.loads(line) for line in (SHARED / "claim_dev.jsonl").read_text(encoding="utf-8").splitlines()
               if line.strip()]
    for caller in callers:
        gold = caller["gold"]
        found = index.find(gold["insured_id_number"], None, None)
        assert [r.insured_name for r in found] == [gold["insured_name"]]
        # the same with the last digit misheard, confirmed by the name
        wrong = gold["insured_id_number"][:-1] + ("0" if gold["insured_id_number"][-1] != "0" else "1")
        assert [r.insured_id_number for r in index.find(wrong, None, gold["insured_name"])] == [gold["insured_id_number"]]


# ---------------------------------------------------------------- names by sound (recognized speech)


def test_near_id_agrees_with_a_name_that_sounds_like_the_records() -> None:
    one_off = "110101195705157706"
    assert INDEX.find(one_off, None, "涵慧") == [HAN]  # 涵 for 韩: a recognizer homophone
    assert INDEX.find(one_off, None, "寒强") == [HAN]  # the holder's name, by sound
    assert INDEX.find(one_off, None, "韩明") == []  # the family name alone is not enough
    two_dropped = "1101011957051577"  # digits said twice and heard once
    assert INDEX.find(two_dropped, None, "韩慧") == [HAN]


def test_near_id_prefers_the_exact_name_or_phone() -> None:
    assert INDEX.near_id("110101195705157706", "", "韩慧") == [HAN]
    assert INDEX.near_id("110101195705157706", "13700003333", None) == [NEIGHBOUR]
    assert INDEX.near_id("110101195705157706", "", None) == []
    assert INDEX.near_id("999999999999999999", "13700003333", "王芳") == []


def test_phone_narrowed_by_a_name_that_sounds_alike() -> None:
    shared = RecordIndex([LI, rec("P4", "李父", "110101195001010011", "13800002222", holder="李明")])
    assert [r.policy_number for r in shared.find(None, "13800002222", "李福")] == ["P4"]


def test_an_id_with_a_repeated_digit_heard_once_finds_its_record_exactly() -> None:
    index = RecordIndex([rec("P1", "许伟芳", "510107199408115583", "13476525555"),
                         rec("P2", "别人", "510107199408115538", "13900000000")])
    heard = "51010719940811583"  # 五五 heard as 五
    assert [r.policy_number for r in index.said_twice(heard)] == ["P1"]
    assert [r.policy_number for r in index.said_twice("5101071994081583")] == ["P1"]  # and 一一 as 一
    assert [r.policy_number for r in index.said_twice("5101071994081155583")] == ["P1"]  # 五 heard twice
    assert index.said_twice("51010719940811584") == []  # another slip: not this way
    assert index.said_twice("510107199408115583") == []  # a whole ID is looked up as it is
