"""The SurveyJS expression subset used by `visibleIf`: a small tokenizer, parser and evaluator.

Grammar, loosest first (no eval(), no attribute access, no function calls):

    expr       := or
    or         := and (("or" | "||") and)*
    and        := not (("and" | "&&") not)*
    not        := ("not" | "!") not | comparison
    comparison := operand [binop operand | "empty" | "notempty"]
    binop      := = == != <> < <= > >= anyof allof contains notcontains
    operand    := {name} | 'text' | "text" | number | true | false | null | [operand, ...] | ( expr )

Names are answers or context variables, dotted names allowed (`{policy.payment}`: the key as
written first, then nested mappings). A missing variable is empty (None), never a crash; a
comparison of things that do not compare is false. Parse errors carry the 0-based position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

KEYWORD_OPERATORS = ("anyof", "allof", "contains", "notcontains")
POSTFIX = ("empty", "notempty")
_SYMBOLS = ("==", "!=", "<>", "<=", ">=", "&&", "||", "=", "<", ">", "!", "(", ")", "[", "]", ",")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMPARE = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


class ExpressionError(ValueError):
    """An expression that does not parse; `position` is the 0-based offset of the problem."""

    def __init__(self, problem: str, position: int, text: str) -> None:
        super().__init__(f"{problem} at position {position} in {text!r}")
        self.problem = problem
        self.position = position
        self.text = text


@dataclass(frozen=True)
class _Token:
    kind: str  # name, string, number, word, symbol, end
    value: Any
    position: int


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "{":
            end = text.find("}", i)
            if end < 0:
                raise ExpressionError("unclosed '{'", i, text)
            name = text[i + 1:end].strip()
            if not _NAME.fullmatch(name):
                raise ExpressionError(f"{{{name}}} is not a variable name", i, text)
            out.append(_Token("name", name, i))
            i = end + 1
            continue
        if ch in "'\"":
            end = text.find(ch, i + 1)
            if end < 0:
                raise ExpressionError("unclosed string", i, text)
            out.append(_Token("string", text[i + 1:end], i))
            i = end + 1
            continue
        number = _NUMBER.match(text, i)
        if number:
            literal = number.group()
            out.append(_Token("number", float(literal) if "." in literal else int(literal), i))
            i = number.end()
            continue
        word = _WORD.match(text, i)
        if word:
            out.append(_Token("word", word.group().lower(), i))
            i = word.end()
            continue
        for symbol in _SYMBOLS:
            if text.startswith(symbol, i):
                out.append(_Token("symbol", symbol, i))
                i += len(symbol)
                break
        else:
            raise ExpressionError(f"unexpected character {ch!r}", i, text)
    out.append(_Token("end", None, len(text)))
    return out


# The tree: tuples, evaluated by _value. ("var", name) ("lit", v) ("list", items) ("not", x)
# ("and", a, b) ("or", a, b) ("cmp", op, a, b) ("post", op, a)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def error(self, problem: str, token: _Token | None = None) -> ExpressionError:
        return ExpressionError(problem, (token or self.peek()).position, self.text)

    def is_(self, *values: str) -> bool:
        token = self.peek()
        return token.kind in ("word", "symbol") and token.value in values

    def parse(self) -> tuple:
        if self.peek().kind == "end":
            raise self.error("empty expression")
        tree = self.or_()
        if self.peek().kind != "end":
            raise self.error(f"unexpected {self._show(self.peek())}")
        return tree

    def or_(self) -> tuple:
        tree = self.and_()
        while self.is_("or", "||"):
            self.take()
            tree = ("or", tree, self.and_())
        return tree

    def and_(self) -> tuple:
        tree = self.not_()
        while self.is_("and", "&&"):
            self.take()
            tree = ("and", tree, self.not_())
        return tree

    def not_(self) -> tuple:
        if self.is_("not", "!"):
            self.take()
            return ("not", self.not_())
        return self.comparison()

    def comparison(self) -> tuple:
        left = self.operand()
        token = self.peek()
        if token.kind == "symbol" and token.value in _COMPARE:
            self.take()
            return ("cmp", _COMPARE[token.value], left, self.operand())
        if token.kind == "word" and token.value in KEYWORD_OPERATORS:
            self.take()
            return ("cmp", token.value, left, self.operand())
        if token.kind == "word" and token.value in POSTFIX:
            self.take()
            return ("post", token.value, left)
        return left

    def operand(self) -> tuple:
        token = self.take()
        if token.kind == "name":
            return ("var", token.value)
        if token.kind in ("string", "number"):
            return ("lit", token.value)
        if token.kind == "word" and token.value in ("true", "false"):
            return ("lit", token.value == "true")
        if token.kind == "word" and token.value in ("null", "undefined"):
            return ("lit", None)
        if token.kind == "symbol" and token.value == "(":
            tree = self.or_()
            if not self.is_(")"):
                raise self.error(f"expected ')' but found {self._show(self.peek())}")
            self.take()
            return tree
        if token.kind == "symbol" and token.value == "[":
            items: list[tuple] = []
            if self.is_("]"):
                self.take()
                return ("list", tuple(items))
            while True:
                items.append(self.operand())
                if self.is_(","):
                    self.take()
                    continue
                if self.is_("]"):
                    self.take()
                    return ("list", tuple(items))
                raise self.error(f"expected ',' or ']' but found {self._show(self.peek())}")
        if token.kind == "word":
            raise self.error(f"unexpected word {token.value!r} (variables are written {{name}})", token)
        raise self.error(f"expected a value but found {self._show(token)}", token)

    @staticmethod
    def _show(token: _Token) -> str:
        if token.kind == "end":
            return "the end"
        if token.kind == "name":
            return f"{{{token.value}}}"
        return repr(token.value)


def _lookup(values: Mapping[str, Any], name: str) -> Any:
    if name in values:
        return values[name]
    current: Any = values
    for part in name.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, tuple, set, dict)) and len(value) == 0)


def _scalar(value: Any) -> Any:
    """Numbers written as strings compare as numbers; "true"/"false" as booleans (SurveyJS does)."""
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return float(text) if "." in text else int(text)
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
    return value


def _equal(a: Any, b: Any) -> bool:
    if _is_empty(a) and _is_empty(b):
        return True
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        if not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))):
            return False
        return sorted(map(repr, map(_scalar, a))) == sorted(map(repr, map(_scalar, b)))
    a, b = _scalar(a), _scalar(b)
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return a == b


def _items(value: Any) -> list[Any]:
    if _is_empty(value):
        return []
    return list(value) if isinstance(value, (list, tuple, set)) else [value]


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "=":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op in ("<", "<=", ">", ">="):
        a, b = _scalar(a), _scalar(b)
        numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
        if not numbers and not (isinstance(a, str) and isinstance(b, str)):
            return False
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    if op == "anyof":
        return any(_equal(x, y) for x in _items(a) for y in _items(b))
    if op == "allof":
        wanted = _items(b)
        return bool(wanted) and all(any(_equal(x, y) for x in _items(a)) for y in wanted)
    if op in ("contains", "notcontains"):
        if isinstance(a, str) and isinstance(b, str):
            found = b in a
        else:
            found = all(any(_equal(x, y) for x in _items(a)) for y in _items(b)) and not _is_empty(b) \
                and not _is_empty(a)
        return found if op == "contains" else not found
    raise AssertionError(op)


def _value(tree: tuple, values: Mapping[str, Any]) -> Any:
    kind = tree[0]
    if kind == "var":
        return _lookup(values, tree[1])
    if kind == "lit":
        return tree[1]
    if kind == "list":
        return [_value(item, values) for item in tree[1]]
    if kind == "not":
        return not _truth(_value(tree[1], values))
    if kind == "and":
        return _truth(_value(tree[1], values)) and _truth(_value(tree[2], values))
    if kind == "or":
        return _truth(_value(tree[1], values)) or _truth(_value(tree[2], values))
    if kind == "cmp":
        return _compare(tree[1], _value(tree[2], values), _value(tree[3], values))
    if kind == "post":
        empty = _is_empty(_value(tree[2], values))
        return empty if tree[1] == "empty" else not empty
    raise AssertionError(kind)


def _truth(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0")
    return bool(value) and not _is_empty(value)


def _names(tree: tuple) -> set[str]:
    kind = tree[0]
    if kind == "var":
        return {tree[1]}
    if kind == "lit":
        return set()
    if kind == "list":
        parts: tuple = tree[1]
    else:
        parts = tuple(part for part in tree[1:] if isinstance(part, tuple))
    found: set[str] = set()
    for part in parts:
        found |= _names(part)
    return found


@dataclass(frozen=True)
class Expression:
    """A parsed expression: `text` as written, `variables` every {name} it reads."""

    text: str
    tree: tuple
    variables: frozenset[str]

    def evaluate(self, values: Mapping[str, Any]) -> bool:
        return _truth(_value(self.tree, values))


def parse(text: str) -> Expression:
    if not isinstance(text, str):
        raise ExpressionError("an expression is a string", 0, repr(text))
    tree = _Parser(text).parse()
    return Expression(text=text, tree=tree, variables=frozenset(_names(tree)))
