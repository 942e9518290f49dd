"""GB 11643-1999 resident ID numbers."""

from __future__ import annotations

from datetime import date

import pytest

from speech.understanding.idcard import check_character, id_problem, is_valid_id, normalize_id

TODAY = date(2026, 3, 19)


@pytest.mark.parametrize(
    "number",
    ["110101199003072316", "330106199011130961", "61011319380925078X", "31010419720726283X", "440305199211203811"],
)
def test_valid(number: str) -> None:
    assert id_problem(number, TODAY) is None
    assert is_valid_id(number, TODAY)


def test_check_character() -> None:
    assert check_character("11010119900307231") == "6"
    assert check_character("61011319380925078") == "X"


def test_lower_case_x_is_accepted() -> None:
    assert normalize_id("61011319380925078x") == "61011319380925078X"
    assert id_problem("61011319380925078x", TODAY) is None


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("11010119900307231", "id_length"),  # 17 characters
        ("1101011990030723166", "id_length"),  # 19
        ("11010119900307231A", "id_length"),
        ("110101199003072317", "id_checksum"),  # last digit off by one
        ("440305199211203815", "id_checksum"),  # the sample claim sentence c04 has a wrong check digit
        ("110101199013072316", "id_birth_date"),  # month 13
        ("110101189903072316", "id_birth_date"),  # before 1900
        ("110101202712012316", "id_birth_date"),  # born after the call
        ("910101199003072316", "id_region"),  # no region starts with 9
        ("010101199003072316", "id_region"),
    ],
)
def test_problems(number: str, code: str) -> None:
    assert id_problem(number, TODAY) == code


def test_born_on_the_call_day_is_plausible() -> None:
    first17 = "11010120260319001"
    assert id_problem(first17 + check_character(first17), TODAY) is None
