"""Kinds for facts about a person: `person_name`, `phone`, `id_number`, `digits` (an ID number's last
four), `date` (a past date).

Thin wrappers over the readers the claim reader uses too (names.py, phone.py, idcard.py,
dates.py), for flows that ask for these alone, without the claim roles.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from .. import dates as dates_mod
from ..idcard import id_problem, normalize_id
from ..names import NameFinder, NamePrior, load_given_names, load_spellings, load_surnames, name_problem
from ..numbers import digits_by_sound, find_digit_runs
from ..phone import normalize_phone
from .base import Dictionaries, Heard, Options, Reading

_DIGIT_WORDS = ("零", "幺", "一", "二", "两", "三", "四", "五", "六", "七", "八", "九")


class PersonName:
    name = "person_name"

    def __init__(self, options: Mapping[str, Any], dictionaries: Dictionaries) -> None:
        Options(options, set())
        surnames = dictionaries.shared("surnames", lambda: load_surnames(dictionaries.path("surnames.txt")))
        self._finder = dictionaries.shared("person_names", lambda: NameFinder(
            surnames, load_spellings(dictionaries.path("surname_spellings.yaml")),
            stop_words=[*dictionaries.acts().affirm_words, *dictionaries.acts().deny_words], relation_words=[]))
        self._prior = dictionaries.shared("name_prior", lambda: NamePrior(
            surnames, load_given_names(dictionaries.path("given_names.txt"))))

    def read(self, heard: Heard) -> Reading | None:
        mentions = self._finder.find(heard.text)  # "我叫韦文博", "我姓张，叫张建国"
        found = mentions[0] if mentions else (self._finder.bare(heard.text) if heard.asked else None)
        if found is None:
            return None
        name = self._prior.normalize(found.name) if heard.recognized else found.name
        problem = name_problem(name)
        if problem:
            return Reading(None, 0.0, found.name, problem)  # "我叫公元前一万年": the flow asks again
        confidence = found.confidence if heard.asked else min(found.confidence, 0.6)
        if heard.recognized and not self._prior.plausible(name):
            confidence = min(confidence, 0.4)
        return Reading(name, confidence, found.name)

    def normalize(self, raw: str) -> str | None:
        found = self._finder.bare(raw)
        return found.name if found else None

    def validate(self, value: str, now: datetime) -> str | None:
        return name_problem(value)

    def grammar(self) -> None:
        return None  # names are an open vocabulary

    def say(self, value: str) -> str:
        return value


class Phone:
    name = "phone"

    def __init__(self, options: Mapping[str, Any], dictionaries: Dictionaries) -> None:
        Options(options, set())

    def read(self, heard: Heard) -> Reading | None:
        runs = [r for r in find_digit_runs(heard.text, allow_x=False) if len(r.digits) >= 7]
        if not runs and heard.asked and heard.recognized:
            sound = digits_by_sound(heard.text, allow_x=False)  # 要八零 for 幺八零
            if normalize_phone(sound):
                return Reading(normalize_phone(sound), 0.6, heard.text)
        if not runs:
            return None
        run = max(runs, key=lambda r: len(r.digits))
        phone = normalize_phone(run.digits)
        span = heard.text[run.start:run.end]
        return Reading(phone, 0.95, span) if phone else Reading(None, 0.0, span, "phone_format")

    def normalize(self, raw: str) -> str | None:
        runs = find_digit_runs(raw, allow_x=False)
        return normalize_phone("".join(r.digits for r in runs)) if runs else None

    def validate(self, value: str, now: datetime) -> str | None:
        return None if normalize_phone(value) == value else "phone_format"

    def grammar(self) -> None:
        return None  # "就用这个号码" and the digits: the full vocabulary hears both

    def say(self, value: str) -> str:
        return value


class IdNumber:
    name = "id_number"

    def __init__(self, options: Mapping[str, Any], dictionaries: Dictionaries) -> None:
        Options(options, set())

    def read(self, heard: Heard) -> Reading | None:
        runs = [r for r in find_digit_runs(heard.text) if len(r.digits) >= (6 if heard.asked else 15)]
        if not runs:
            return None
        run = max(runs, key=lambda r: len(r.digits))
        number = normalize_id(run.digits)
        span = heard.text[run.start:run.end]
        problem = id_problem(number, heard.now.date())
        return Reading(None if problem else number, 0.95, span, problem)

    def normalize(self, raw: str) -> str | None:
        runs = find_digit_runs(raw)
        return normalize_id("".join(r.digits for r in runs)) if runs else None

    def validate(self, value: str, now: datetime) -> str | None:
        return id_problem(value, now.date())

    def grammar(self) -> tuple[str, ...]:
        return (*_DIGIT_WORDS, "叉", "X")

    def say(self, value: str) -> str:
        return value


class Digits:
    """A fixed number of characters said digit by digit (`length`, default 4), with a final X when
    `x` is true: the last four characters of an ID number ("一二三四", "三五七叉", "三五七艾克斯",
    keyed 357* with the keypad's star as X). Only read as the answer to its own question."""

    name = "digits"

    def __init__(self, options: Mapping[str, Any], dictionaries: Dictionaries) -> None:
        opts = Options(options, {"length", "x"})
        self.length = opts.integer("length", 4, 1)
        self.x = bool(opts.get("x", False))

    def read(self, heard: Heard) -> Reading | None:
        if not heard.asked:
            return None
        runs = find_digit_runs(heard.text, allow_x=self.x)
        if not runs:
            return None
        # the run of the right length, else all digits said (a pause may split "一二，三四")
        run = next((r for r in runs if len(r.digits) == self.length), None)
        value = run.digits if run is not None else "".join(r.digits for r in runs)
        span = heard.text[run.start:run.end] if run is not None else heard.text
        problem = self._problem(value)
        return Reading(None if problem else value, 0.9, span, problem)

    def _problem(self, value: str) -> str | None:
        if len(value) != self.length or "X" in value[:-1] or ("X" in value and not self.x):
            return "digits_length"
        return None

    def normalize(self, raw: str) -> str | None:
        runs = find_digit_runs(raw, allow_x=self.x)
        return "".join(r.digits for r in runs).upper() if runs else None

    def validate(self, value: str, now: datetime) -> str | None:
        return self._problem(value.upper())

    def grammar(self) -> tuple[str, ...]:
        return (*_DIGIT_WORDS, *(("叉", "艾克斯") if self.x else ()))

    def say(self, value: str) -> str:
        return value


class Date:
    """A day in the past or today ("昨天", "上周三", "3月5号", "2026-03-17"), as YYYY-MM-DD."""

    name = "date"

    def __init__(self, options: Mapping[str, Any], dictionaries: Dictionaries) -> None:
        Options(options, set())
        self._hints = tuple(dictionaries.lines("date_hints.txt"))

    def read(self, heard: Heard) -> Reading | None:
        found = dates_mod.find_dates(heard.text, heard.now)
        if not found:
            return None
        mention = found[0]
        if mention.value is None:
            return Reading(None, 0.0, mention.span, mention.problem or "date_invalid")
        return Reading(mention.value.isoformat(), 0.95 if heard.asked else 0.85, mention.span)

    def normalize(self, raw: str) -> str | None:
        """An absolute date only ("2026-03-17"); relative ones need the call's date (`read`)."""
        try:
            return datetime.fromisoformat(raw.strip()).date().isoformat()
        except ValueError:
            return None

    def validate(self, value: str, now: datetime) -> str | None:
        try:
            day = datetime.fromisoformat(value).date()
        except ValueError:
            return "date_invalid"
        return "date_future" if day > now.date() else None

    def grammar(self) -> tuple[str, ...]:
        return self._hints

    def say(self, value: str) -> str:
        try:
            day = datetime.fromisoformat(value).date()
        except ValueError:
            return value
        return f"{day.year}年{day.month}月{day.day}日"
