"""The visibleIf expression subset: operators, precedence, missing variables and errors with positions."""

from __future__ import annotations

import pytest

from surveys.expressions import ExpressionError, parse

VALUES = {
    "payment": "regular", "product_type": "participating", "years": 10, "rating": "4", "agree": True,
    "channels": ["agent", "bank"], "remarks": "", "policy": {"payment": "single", "holder": {"age": 61}},
    "dotted.key": "as written",
}


@pytest.mark.parametrize("text, expected", [
    ("{payment} = 'regular'", True),
    ("{payment} == \"regular\"", True),
    ("{payment} != 'regular'", False),
    ("{payment} <> 'single'", True),
    ("{years} > 5", True), ("{years} >= 10", True), ("{years} < 10", False), ("{years} <= 9.5", False),
    ("{rating} = 4", True),  # numbers written as text compare as numbers
    ("{rating} > 3", True),
    ("{agree} = true", True), ("{agree} = 'true'", True), ("{agree} = false", False),
    ("{product_type} anyof ['participating', 'universal']", True),
    ("{product_type} anyof ['health']", False),
    ("{channels} anyof ['bank', 'web']", True),
    ("{channels} allof ['bank', 'agent']", True),
    ("{channels} allof ['bank', 'web']", False),
    ("{channels} contains 'agent'", True),
    ("{channels} notcontains 'web'", True),
    ("{payment} contains 'gul'", True),
    ("{remarks} empty", True), ("{remarks} notempty", False),
    ("{channels} notempty", True),
    ("{policy.payment} = 'single'", True),  # nested mappings
    ("{policy.holder.age} >= 60", True),
    ("{dotted.key} = 'as written'", True),  # the key as written first
    ("{years} = -1 or {years} > -5", True),
    ("[1, 2] = [2, 1]", True),
    ("true", True), ("false", False),
])
def test_operators(text, expected):
    assert parse(text).evaluate(VALUES) is expected


@pytest.mark.parametrize("text, expected", [
    ("{payment} = 'single' or {years} = 10 and {agree} = false", False),  # and binds tighter than or
    ("({payment} = 'single' or {years} = 10) and {agree} = true", True),
    ("not {payment} = 'single'", True),  # not of the comparison
    ("not {agree} = true or {years} = 10", True),  # (not ...) or ...
    ("!({years} = 10) && {agree} = true", False),
    ("not not {agree}", True),
    ("{payment} = 'regular' || {nothing} = 1 && {agree} = false", True),
    ("NOT {remarks} NOTEMPTY AND {years} > 1", True),  # keywords in any case
])
def test_precedence(text, expected):
    assert parse(text).evaluate(VALUES) is expected


@pytest.mark.parametrize("text, expected", [
    ("{missing} empty", True),
    ("{missing} notempty", False),
    ("{missing} = 'x'", False),
    ("{missing} != 'x'", True),
    ("{missing} > 1", False), ("{missing} < 1", False),
    ("{missing} anyof ['a']", False),
    ("{missing} contains 'a'", False),
    ("{missing} notcontains 'a'", True),
    ("{missing.deeper} empty", True),
    ("{payment.deeper} empty", True),  # a text has no fields
    ("{missing}", False),
    ("{channels} > 1", False),  # what does not compare is false, never a crash
    ("{policy} = 'x'", False),
])
def test_a_missing_variable_is_empty_never_a_crash(text, expected):
    assert parse(text).evaluate(VALUES) is expected
    assert parse(text).evaluate({}) in (True, False)


def test_variables_are_listed():
    expression = parse("{a} = 1 and ({b.c} anyof [{d}, 'x'] or not {e} empty)")
    assert expression.variables == {"a", "b.c", "d", "e"}
    assert expression.text == "{a} = 1 and ({b.c} anyof [{d}, 'x'] or not {e} empty)"


@pytest.mark.parametrize("text, position, words", [
    ("", 0, "empty expression"),
    ("{a} =", 5, "expected a value but found the end"),
    ("({a} = 1", 8, "expected ')'"),
    ("{a} = 1 )", 8, "unexpected ')'"),
    ("{a} = 1 1", 8, "unexpected 1"),
    ("{a} = 'open", 6, "unclosed string"),
    ("{a = 1", 0, "unclosed '{'"),
    ("{a b} = 1", 0, "is not a variable name"),
    ("{a} ~ 1", 4, "unexpected character '~'"),
    ("payment = 'regular'", 0, "variables are written {name}"),
    ("{a} anyof ['x' 'y']", 15, "expected ',' or ']'"),
    ("{a} = 1 and", 11, "expected a value"),
    ("__import__('os')", 0, "unexpected word"),
])
def test_errors_carry_the_position(text, position, words):
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert caught.value.position == position, str(caught.value)
    assert words in str(caught.value) and f"at position {position}" in str(caught.value)
    assert isinstance(caught.value, ValueError)
