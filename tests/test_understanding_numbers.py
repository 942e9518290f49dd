"""Spoken digit strings, cardinals and money."""

from __future__ import annotations

import pytest

from speech.understanding.numbers import (
    digits_by_sound,
    find_digit_runs,
    parse_cardinal,
    parse_money,
    spoken_digits,
)


@pytest.mark.parametrize(
    ("said", "digits"),
    [
        ("幺八零零零八零六三六零", "18000806360"),
        ("幺八零，零零八零，六三六零", "18000806360"),  # grouped with pauses
        ("幺 三八 零九 三九 七二 九八", "13809397298"),
        ("一三八 1234 5678", "13812345678"),  # mixed Chinese and Arabic
        ("１３８１２３４５６７８", "13812345678"),  # full-width
        ("零零八六", "0086"),  # leading zeros stay
        ("洞拐洞", "070"),  # radio-style 洞 (0) and 拐 (7)
        ("两勾〇", "290"),
        ("三 幺 零 幺 零 四 幺 九 七 二 零 七 二 六 二 八 三 叉", "31010419720726283X"),
        ("六一零一一三一九三八零九二五零七八艾克斯", "61011319380925078X"),
        ("31010419720726283x", "31010419720726283X"),
        ("幺八零嗯零零八零", "1800080"),  # a hesitation inside a number
    ],
)
def test_spoken_digits(said: str, digits: str) -> None:
    assert spoken_digits(said) == digits


def test_runs_are_split_by_words() -> None:
    runs = find_digit_runs("手机幺三八零零幺三八零零零，身份证一一零一零一一九九零零三零七二三一六")
    assert [r.digits for r in runs] == ["13800138000", "110101199003072316"]


def test_x_only_at_the_end_of_a_run() -> None:
    assert find_digit_runs("叉烧", allow_x=True) == []
    assert find_digit_runs("一二三叉", allow_x=False)[0].digits == "123"


def test_run_positions_and_groups() -> None:
    (run,) = find_digit_runs("号码是幺八零，零零八零")
    assert (run.start, run.end) == (3, 11)
    assert run.groups == ("180", "0080")


@pytest.mark.parametrize(
    ("heard", "digits"),
    [
        ("要 八零 零零 八零 六 三六零", "18000806360"),  # 要 for 幺
        ("一 九六 久期 三", "19697" "3"),  # 久期 for 九七
        ("三 粑粑 三", "3883"),
        ("上周 死", "4"),
    ],
)
def test_digits_by_sound(heard: str, digits: str) -> None:
    assert digits_by_sound(heard) == digits


@pytest.mark.parametrize(
    ("span", "value"),
    [("十二", 12), ("二十三", 23), ("一百", 100), ("三十", 30), ("十", 10), ("两千", 2000), ("17", 17), ("二十一", 21)],
)
def test_cardinals(span: str, value: int) -> None:
    assert parse_cardinal(span) == value


def test_not_a_cardinal() -> None:
    assert parse_cardinal("") is None
    assert parse_cardinal("你好") is None


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("三千五百元", 3500),
        ("3500块", 3500),
        ("花了三万六千八百元", 36800),
        ("一共850元", 850),
        ("一万二千元", 12000),
        ("1.5万元", 15000),
    ],
)
def test_money(text: str, amount: float) -> None:
    assert parse_money(text) == amount


def test_no_money() -> None:
    assert parse_money("住了七天") is None
