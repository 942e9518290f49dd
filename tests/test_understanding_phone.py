"""Contact numbers."""

from __future__ import annotations

import pytest

from speech.understanding.phone import mentions_caller_number, normalize_phone, phone_problem


@pytest.mark.parametrize(
    ("digits", "phone"),
    [
        ("13812345678", "13812345678"),
        ("19228303883", "19228303883"),
        ("8613812345678", "13812345678"),
        ("01012345678", "010-12345678"),
        ("02165432109", "021-65432109"),
        ("075512345678", "0755-12345678"),
        ("07551234567", "0755-1234567"),
        ("010-1234-5678", "010-12345678"),
    ],
)
def test_normalize(digits: str, phone: str) -> None:
    assert normalize_phone(digits) == phone


@pytest.mark.parametrize("digits", ["12812345678", "1381234567", "138123456789", "12345", "0101234", ""])
def test_not_a_phone(digits: str) -> None:
    assert normalize_phone(digits) is None
    assert phone_problem(digits) == "phone_format"


@pytest.mark.parametrize(
    "text",
    [
        "就用这个号码",
        "就是这个来电号码",
        "打进来的这个号",
        "用这个号码就行",
        "就 打 我 现在 这个 号",
        "就是我现在打的这个",
        "本机号码就可以",
        "用我这个手机就行",
    ],
)
def test_caller_number(text: str) -> None:
    assert mentions_caller_number(text)


@pytest.mark.parametrize("text", ["不用这个号码，打我另一个", "我的手机号是13812345678", "身份证号是多少", "别打这个号"])
def test_not_the_caller_number(text: str) -> None:
    assert not mentions_caller_number(text)
