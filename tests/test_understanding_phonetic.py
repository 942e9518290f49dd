"""Names by sound: recognizer homophones and near misses against names we know (policy records)."""

from __future__ import annotations

from pathlib import Path

import pytest

from speech.understanding.names import NamePrior, load_given_names, load_surnames
from speech.understanding.phonetic import (best_match, name_similarity, same_person, sound_key, sounds,
                                           split_syllable, syllable_similarity)

DICTIONARIES = Path(__file__).resolve().parents[1] / "config" / "dictionaries"


def test_syllables_split_and_fold() -> None:
    assert split_syllable("zhong") == ("zh", "ong")
    assert split_syllable("an") == ("", "an")
    assert sound_key("假钞") == sound_key("贾超") == "jia cao"  # ch folded to c
    assert ("z", "en") in sounds("曾")  # every reading of a surname: zeng (folded to zen) and ceng
    assert ("c", "en") in sounds("曾")
    assert sounds("A") == ()


def test_syllable_similarity() -> None:
    assert syllable_similarity("慧", "会") == 1.0  # homophones
    assert syllable_similarity("钟", "周") == 0.5  # same initial
    assert syllable_similarity("远", "娟") == 0.5  # same final
    assert syllable_similarity("磊", "伟") == 0.5  # final only ... lei / wei
    assert syllable_similarity("苏", "明") == 0.0


@pytest.mark.parametrize("heard, known, score", [
    ("假钞", "贾超", 1.0),
    ("为文博", "韦文博", 1.0),
    ("中会", "周慧", 0.75),
    ("贤晓明", "谢晓明", 5 / 6),
    ("谢建军", "谢建国", 2 / 3),
])
def test_name_similarity(heard: str, known: str, score: float) -> None:
    assert name_similarity(heard, known) == pytest.approx(score)
    assert name_similarity(known, heard) == pytest.approx(score)


def test_names_of_different_lengths_are_aligned_by_sound() -> None:
    assert name_similarity("贺强", "贺志强") == pytest.approx(2 / 3)  # a syllable dropped
    assert name_similarity("", "贺强") == 0.0
    assert name_similarity("ab", "贺强") == 0.0


def test_same_person_needs_the_given_name_to_sound_alike() -> None:
    assert same_person("假钞", "贾超")
    assert same_person("中会", "周慧")  # the surname misheard, the given name right
    assert same_person("贤晓明", "谢晓明")
    assert not same_person("谢建军", "谢建国")  # family: same surname, another given name
    assert not same_person("郑远", "郑娟")
    assert not same_person("钟勇", "钟明")
    assert not same_person("", "贾超")


def test_best_match_picks_the_record_name_and_refuses_a_tie() -> None:
    assert best_match("假钞", ["谢晓明", "贾超"]) == "贾超"
    assert best_match("将建国", ["贾超"]) is None
    assert best_match("为文", ["韦文", "魏文"]) is None  # both sound just like it
    assert best_match("为文", ["韦文", "韦文"]) == "韦文"


@pytest.fixture(scope="module")
def prior() -> NamePrior:
    return NamePrior(load_surnames(DICTIONARIES / "surnames.txt"), load_given_names(DICTIONARIES / "given_names.txt"))


@pytest.mark.parametrize("heard, spelled", [
    ("涵建国", "韩建国"),  # han2: 涵 is no surname, 韩 is
    ("良勇", "梁勇"),
    ("田家姨", "田佳怡"),  # jia1 yi2: the common given name
    ("中会", "钟慧"),  # zhong1 → the surname 钟; hui4 → 慧
    ("何志强", "何志强"),  # a known surname and given name stay as heard
    ("郑燕", "郑燕"),
    ("刘磊", "刘磊"),
    ("欧阳", "欧阳"),  # too short to be more than a compound surname: unchanged
])
def test_name_prior_spells_homophones_as_common_names(prior: NamePrior, heard: str, spelled: str) -> None:
    assert prior.normalize(heard) == spelled


def test_name_prior_keeps_what_it_cannot_place(prior: NamePrior) -> None:
    assert prior.normalize("岳燕") == "岳燕"  # 岳 is a surname
    assert prior.normalize("张") == "张"
    assert prior.normalize("Li Ming") == "Li Ming"


def test_plausible_names(prior: NamePrior) -> None:
    assert prior.plausible("刘磊") and prior.plausible("熊小红") and prior.plausible("欧阳娜")
    assert not prior.plausible("证券")  # 证 is no surname
    assert not prior.plausible("附件均")
    assert not prior.plausible("刘")
