"""The form-filling dialogue engine: a plain state machine, no I/O.

The shell feeds it caller events (`on_text`, `on_dtmf`, `on_no_input`, `on_hangup`) and carries
out the returned actions (`Prompt`, `Report`, `Transfer`, `Hangup`) in order. Everything the
caller says goes through the extractor, whatever was asked (mixed initiative); the engine asks
only for what is still missing, then reads the form back for one confirmation (the slots the flow
confirms; none: it ends there). The report's status is the call's outcome: complete, partial,
transferred, refused (the caller declined, in a flow that says what to answer), or an outcome
the flow defines by a condition on the values. The engine knows no slot by name: what a slot
holds is its kind's, read by the extractor the flow was bound to.

Values carry a source. The caller's own words for the slot being asked, and corrections,
override anything; a side remark never overrides a value already given; a policy record
overrides recognition (but not a correction); derivations and defaults are guesses that anything
else replaces, and the read-back says where they came from.

Voice calls (`on_text` with the recognizer's confidence) get more care, since the recognizer
writes homophones and drops digits: a name that sounds like the policy record's takes its
spelling; an ID that fails its check is looked up near the digits heard and, failing that, asked
again only after the questions that may bring a name for the look-up; a value heard without its
slot's vocabulary (the opening, a read-back correction) is asked once more with it (`recheck`);
a read-back "no" we cannot place re-asks what we only assumed; a value the caller rejects again
and again goes to a person instead of looping. A name the caller said that no policy record
confirms is read back alone by its surname's spelling (`spell`: "您姓张，弓长张，对吗？"), a
spelled correction ("不是，是立早章") fixing the surname; a "no" to that asks for the spelling
(`spell_again`). A repair that failed once is asked the narrower way (`repair`: spell the
surname, the keypad, a choice list), never the same question the same way a third time.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from datetime import date
from typing import Callable, Literal, Protocol, Sequence

from speech.dialogue.actions import Action, Hangup, Prompt, Report, ReportStatus, SlotDetail, Source, Transfer
from speech.dialogue.flow import Flow, holds, pick, render
from speech.dialogue.records import PolicyRecord, RecordLookup, edit_distance
from speech.understanding.phonetic import best_match, given_name_similarity, name_similarity, same_person
from speech.understanding.types import CallContext, Extraction, SlotProblem, SlotValue

log = logging.getLogger(__name__)

CONFIRM = "confirm"
# n-best readings asked of the recognizer for a rejected value asked again: the right one is often
# among them when the best is the same wrong one again (names under the name grammar: the spoken
# name is the best reading in 13% of takes, among the first eight in 30%)
REPAIR_ALTERNATIVES = 8
# How alike (speech.understanding.phonetic) a heard name must sound to the record holder's to be
# that name: the given names clearly, the whole name half (a garbled surname and a right given name)
HOLDER_GIVEN_NAME_ALIKE = 0.75
HOLDER_NAME_ALIKE = 0.5
# What a preamble phrase is matched without: the recognizer's spaces, typed punctuation
_PREAMBLE_GAPS_RE = re.compile(r"[\s，。、！？,.!?~…]+")
Phase = Literal["new", "collect", "confirm", "done"]
Reason = Literal["start", "progress", "no_match", "no_input", "problem"]


class Extractor(Protocol):
    def extract(self, text: str, context: CallContext) -> Extraction: ...


# The caller's own words, recognized or typed.
SAID: tuple[Source, ...] = ("speech", "text")


@dataclass(frozen=True)
class _Value:
    value: str
    confidence: float
    turn: int
    source: Source
    explicit: bool  # the caller gave it (speech, keypad, "this number"); not a guess or a record
    # False: recognized without the slot's own hints (free vocabulary) where the slot has a
    # `recheck`: asked once more with them unless a policy record confirms it
    checked: bool = True


class Dialogue:
    def __init__(self, flow: Flow, extractor: Extractor, context: CallContext,
                 records: RecordLookup | None = None) -> None:
        self.flow = flow
        self._extractor = extractor
        self._context = context
        self._records = records if flow.records is not None else None
        self._specs = {spec.name: spec for spec in flow.slots}
        self._preamble = sorted((_PREAMBLE_GAPS_RE.sub("", p) for p in flow.preamble), key=len, reverse=True)
        self._values: dict[str, _Value] = {}
        self._phase: Phase = "new"
        self._expected: str | None = None  # what the last prompt asked for (a slot or CONFIRM)
        self._turn = 0  # caller utterances so far (speech or a keypad entry)
        self._silences = 0  # no-input timeouts: with the utterances, the prompts the caller has had to answer
        self._no_match: dict[str, int] = {}
        self._no_input: dict[str, int] = {}
        self._problems: dict[str, str] = {}  # slot -> problem code to word the next ask by
        self._keypad: set[str] = set()  # slots the keypad was offered for
        self._buffer = ""  # keypad digits until '#'
        self._skipped: set[str] = set()  # optional slots given up on
        self._corrected: set[str] = set()  # slots the caller corrected: not even a record overrides them
        self._reask: str | None = None  # a filled slot the caller said is wrong, to be asked again
        self._record: PolicyRecord | None = None
        self._record_turn = 0
        self._last_query: tuple | None = None
        self._suggested: set[str] = set()  # slots filled by the records' self or holder rule
        self._readback: dict[str, str] | None = None  # the values at the last read-back
        self._hints: tuple[str, ...] | None = None  # the vocabulary the last prompt listens with
        self._rechecked: dict[str, int] = {}  # slot -> times asked again with its hints
        self._rechecking: str | None = None  # the slot a recheck prompt asks for
        self._correcting: str | None = None  # ... because the caller said at the read-back it is wrong
        self._doubted: set[str] = set()  # slots asked again after a "no" we could not place
        self._rejected: dict[str, set[str]] = {}  # slot -> values the caller said "no" to at the read-back
        self._rejections: dict[str, int] = {}  # slot -> times the caller said at the read-back it is wrong
        self._unresolved: set[str] = set()  # rejected, every way of asking it spent: reported unconfirmed
        self._asked_which = False  # the last prompt asked which item of the read-back is wrong
        self._which_asked = False  # ... at any time in this call
        self._partials: dict[frozenset[str], int] = {}  # items read back alone after "不对，<the same>"
        self._unclear = 0  # read-back answers that were neither a yes nor a no we know
        # item-by-item confirmation, once the whole read-back and "which" failed: the items left
        self._items: list[str] | None = None
        self._item: str | None = None  # the item the last prompt asked to confirm
        self._item_misses: dict[str, int] = {}  # item -> answers to it alone we could not place
        self._voice = False  # the caller speaks (recognized speech), rather than types
        self._id_guess: str | None = None  # digits of an ID heard but invalid, for a tolerant look-up
        self._deferred: set[str] = set()  # misheard numbers asked again last, once other slots may find the record
        self._deferrals: set[str] = set()  # slots ever deferred (once each)
        self._spelled: dict[str, int] = {}  # slot -> times its value was read back alone (`spell`)
        self._spelling: str | None = None  # the slot the last prompt read back alone
        self._repairs: dict[str, int] = {}  # slot -> times asked again because the caller said it is wrong
        self._repaired: set[str] = set()  # slots asked their narrower `repair` question (once each)

    # ------------------------------------------------------------------ public API

    @property
    def slots(self) -> dict[str, str]:
        """Every filled slot, normalized."""
        return {name: self._values[name].value for name in self.flow.slot_names if name in self._values}

    @property
    def finished(self) -> bool:
        return self._phase == "done"

    @property
    def turns(self) -> int:
        """Caller utterances so far."""
        return self._turn

    @property
    def record(self) -> PolicyRecord | None:
        """The policy record the call was matched to."""
        return self._record

    def report(self, status: ReportStatus) -> Report:
        """The report as it stands now, under `status` (what an in-progress save stores)."""
        return self._report(status)

    def start(self) -> list[Action]:
        if self._phase != "new":
            return []
        self._phase = "collect"
        actions = self._proceed("start")
        if self.flow.intro:
            intro = Prompt(render(self.flow.intro, self.slots, self.flow.formats, self._today()), None, self.slots)
            actions.insert(0, intro)
        return actions

    def on_text(self, text: str, confidence: float | None = None, alternatives: Sequence[str] = ()) -> list[Action]:
        """A caller utterance; `alternatives`: the recognizer's other readings of it, best first (given
        when a prompt asked for them: `Prompt.alternatives`)."""
        if self._phase in ("new", "done"):
            return []
        if not text.strip():
            return self.on_no_input()
        self._buffer = ""
        # A recognizer gives a confidence; text without one was typed (chat channel, `text` event).
        return self._utterance(text, "speech" if confidence is not None else "text", confidence, tuple(alternatives))

    def expects_more(self, text: str) -> bool:
        """Is `text`, recognized at the read-back, a bare "no" ("不对", "有个地方不对") that callers
        mostly go on from after a pause ("不对，电话是…")? A shell may then wait a moment for the rest
        and give both as one utterance: the correction is heard with the read-back's vocabulary
        and answered once, instead of "which one?" while the caller is still saying it."""
        if self._phase != "confirm" or not text.strip():
            return False
        context = replace(self._context, expected_slot=self._expected, recognized=True, current=None)
        try:
            extraction = self._extractor.extract(text, context)
        except Exception:  # answered as not understood when it is given on
            return False
        return (extraction.affirm is False and not extraction.values and not extraction.problems
                and not extraction.wants_human and self._named_slot(text) is None)

    def on_dtmf(self, digits: str) -> list[Action]:
        """Keypad: digits (one per event or several), '*' = the slot's star (X in an ID), '#' ends the entry."""
        if self._phase in ("new", "done"):
            return []
        for key in digits:
            if self._phase == "confirm":
                answer = {self.flow.confirm.dtmf_yes: True, self.flow.confirm.dtmf_no: False}.get(key)
                if answer is None:
                    continue
                self._turn += 1
                return self._on_confirm(Extraction(affirm=answer), "dtmf", None, "")
            spec = self._specs.get(self._expected or "")
            if spec is None or spec.dtmf is None:
                continue  # no keypad entry for this question
            if key == "#":
                return self._submit_keypad()
            if key == "*":
                self._buffer += spec.dtmf.star
            elif key.isdigit():
                self._buffer += key
            if spec.dtmf.max_length and len(self._buffer) >= spec.dtmf.max_length:
                return self._submit_keypad()
        return []

    def on_no_input(self) -> list[Action]:
        """The shell's silence timeout."""
        if self._phase in ("new", "done"):
            return []
        if self._buffer:  # keyed digits but no '#': take them as they are
            return self._submit_keypad()
        self._silences += 1
        key = self._expected or CONFIRM
        self._no_input[key] = self._no_input.get(key, 0) + 1
        if self._phase == "confirm":
            if self._no_input[key] >= self.flow.confirm.limit:
                return self._transfer("no_input")
            prefix = self.flow.no_input_prefix[min(self._no_input[key], len(self.flow.no_input_prefix)) - 1]
            return self._question(lambda: self._read_back(prefix))
        return self._proceed("no_input")

    def on_hangup(self) -> list[Action]:
        """The caller is gone: the partial report, if anything was filled, and nothing else."""
        if self._phase == "done":
            return []
        self._phase = "done"
        return [self._report("partial")] if self._values else []

    # ------------------------------------------------------------------ turns

    def _utterance(self, text: str, source: Source, asr_confidence: float | None,
                   alternatives: tuple[str, ...] = ()) -> list[Action]:
        self._turn += 1
        recognized = source == "speech" and asr_confidence is not None
        self._voice = self._voice or recognized
        current = self._values.get(self._expected or "")
        context = replace(self._context, expected_slot=self._expected, recognized=recognized,
                          current=current.value if current is not None else None)
        try:
            extraction = self._extractor.extract(text, context)
        except Exception:  # a bug in understanding must not drop the call: treat as not understood
            log.exception("extractor failed on %r", text)
            extraction = Extraction()
        if source == "dtmf":  # keyed digits answer the question asked, nothing else
            extraction = Extraction(
                values={k: v for k, v in extraction.values.items() if k == self._expected},
                problems={k: v for k, v in extraction.problems.items() if k == self._expected},
            )
        extraction = self._check_expected(extraction)
        if alternatives and self._expected is not None and self._expected == self._correcting:
            extraction = self._not_rejected(extraction, alternatives, context)
        if extraction.wants_human:
            return self._transfer("caller_request")
        if extraction.refused and self.flow.refused:
            return self._refuse()
        self._note_id_guess(extraction)
        if self._phase == "confirm" and self._item is not None:
            return self._on_item(extraction, source, asr_confidence)
        if self._phase == "confirm":
            return self._on_confirm(extraction, source, asr_confidence, text)
        return self._on_answer(extraction, source, asr_confidence, preamble=self._preamble_only(text))

    def _not_rejected(self, extraction: Extraction, alternatives: tuple[str, ...], context: CallContext) -> Extraction:
        """The slot asked again because the caller said its value is wrong, heard as that wrong value
        again (or not at all): the recognizer's next reading that gives another value, if one does.
        A repair must not read the caller back what they just rejected."""
        slot = self._correcting
        assert slot is not None
        rejected = self._rejected.get(slot, set())
        heard = extraction.values.get(slot)
        if heard is not None and heard.value not in rejected:
            return extraction
        for alternative in alternatives:
            try:
                other = self._extractor.extract(alternative, context).values.get(slot)
            except Exception:
                log.exception("extractor failed on %r", alternative)
                continue
            if other is not None and other.value not in rejected:
                return replace(extraction, values={**extraction.values, slot: replace(other, confidence=min(other.confidence, 0.6))})
        return extraction

    def _check_expected(self, extraction: Extraction) -> Extraction:
        """Values of `expect` slots that are not the call's value: the problem `mismatch` instead."""
        wrong = {slot: found for slot, found in extraction.values.items()
                 if slot in self._specs and (param := self._specs[slot].expect) is not None
                 and found.value.strip().upper() != str(self.flow.values.get(param, "")).strip().upper()}
        if not wrong:
            return extraction
        return replace(
            extraction,
            values={k: v for k, v in extraction.values.items() if k not in wrong},
            problems={**extraction.problems,
                      **{slot: SlotProblem(slot, "mismatch", found.span) for slot, found in wrong.items()}},
        )

    def _submit_keypad(self) -> list[Action]:
        entry, self._buffer = self._buffer, ""
        if not entry:
            self._turn += 1
            return self._on_answer(Extraction(), "dtmf", None)
        return self._utterance(entry, "dtmf", None)

    def _preamble_only(self, text: str) -> bool:
        """Nothing but the flow's `preamble` ("喂，你好，我要报案"), before any slot is filled."""
        if not self._preamble or self._values:
            return False
        rest = _PREAMBLE_GAPS_RE.sub("", text)
        if not rest:
            return False
        for phrase in self._preamble:
            rest = rest.replace(phrase, "")
        return not rest

    def _on_answer(self, extraction: Extraction, source: Source, asr_confidence: float | None,
                   preamble: bool = False) -> list[Action]:
        expected = self._expected
        before = self.slots
        answered = self._take(extraction, source, asr_confidence, overwrite={expected} if expected else set())
        self._refresh()
        changed = self._changed_since(before)
        fresh = self._note_problems(extraction, answered)
        if expected is not None and expected == self._spelling:
            return self._on_spelling(expected, extraction, answered)
        if expected is not None and expected == self._reask and expected in answered:
            self._reask = None
        if expected is not None and expected == self._correcting:
            self._correcting = None
            if expected in answered:
                self._corrected.add(expected)  # not even the policy record overrides it now
        if expected is not None and expected == self._rechecking:
            # asked again only to hear it with the slot's vocabulary: no answer keeps what we had
            self._rechecking = None
            if expected not in answered and expected in self._values:
                self._reask = None
                self._problems.pop(expected, None)
                return self._proceed("progress")
        reason: Reason = "progress"
        focus = None
        if expected in self._specs and expected not in answered and self._open(expected):
            if expected in fresh and self._defer(expected, asr_confidence):
                return self._proceed("progress")
            if expected in fresh:
                reason = "problem"
            elif not changed and not extraction.use_caller_number and not preamble:
                reason = "no_match"  # (a greeting alone is no failed answer: asked again, with 好的)
            if reason != "progress":
                self._no_match[expected] = self._no_match.get(expected, 0) + 1
        elif fresh:
            focus = fresh[0]  # an invalid value for another slot: ask for it while it is fresh
        return self._proceed(reason, focus)

    def _on_confirm(self, extraction: Extraction, source: Source, asr_confidence: float | None,
                    text: str) -> list[Action]:
        before = self.slots
        asked_which, self._asked_which = self._asked_which, False
        negative = extraction.affirm is False or extraction.correction
        recognized = source == "speech" and asr_confidence is not None
        if asked_which and extraction.affirm is None and extraction.values:
            # the answer to "请问哪一项不对": a correction even without 不对 (by voice, often the
            # rest of "不对，…" after the recognizer ended the utterance at the pause)
            negative = True
            extraction = replace(extraction, correction=True)
        if recognized and negative and extraction.about in self._specs:
            # "不对，我的手机号是…" misheard: nothing else in it is meant (妻子 for 七四七 is no spouse)
            extraction = self._only_about(extraction)
        extraction = self._reassign_same_kind(extraction, negative)
        held_back = None
        if recognized:
            extraction, held_back = self._hold_back_unchecked(extraction)
        new = {k: v for k, v in extraction.values.items() if k in self._specs and before.get(k) != v.value}
        if negative:
            for k in new:
                self._reject_value(k)  # corrected: what the read-back said was wrong
        mentioned = self._take(replace(extraction, values=new), source, asr_confidence, overwrite=set(new),
                               correction=True)
        mentioned |= {k for k in extraction.values if k in self._specs}
        self._corrected.update(new)
        self._refresh()
        if self._changed_since(before):
            return self._proceed("progress")
        if held_back is not None and extraction.affirm is not True:
            return self._misheard(held_back)
        if mentioned and extraction.affirm is not True and not extraction.problems:
            if negative:
                # "不对，<what the read-back said>": we keep mishearing it the same way; ask for it
                # again with its own vocabulary, if it has one
                # (typed too: then it is our reading that fails, and the same question the same
                # way would fail again)
                again = next((s for s in self.flow.slot_names if s in mentioned and self._specs[s].recheck), None)
                if again is not None and (recognized or self._rejections.get(again, 0) == 0):
                    return self._misheard(again)
                # asked again already (or no vocabulary to hear it with): the narrower question, once
                # ("请从这五种里选一种", "请说一下医院的全名")
                again = next((s for s in self.flow.slot_names if s in mentioned and self._repair_left(s)), None)
                if again is not None:
                    return self._misheard(again)
                self._no_match[CONFIRM] = self._no_match.get(CONFIRM, 0) + 1
                if self._no_match[CONFIRM] >= self.flow.confirm.limit:
                    return self._give_up_rejected("no_match")
            # said again what the read-back had ("就用这个号码"): repeat that part, ask about the rest
            part = frozenset(mentioned)
            if self._partials.get(part, 0) >= 1:
                # ... and again (with a no, or with none we know): that part read back a second time
                # would get the same answer
                if not self._which_asked:
                    return self._ask_which()
                if self.flow.confirm.item:
                    return self._start_items()
            self._partials[part] = self._partials.get(part, 0) + 1
            return self._question(lambda: self._read_back(self.flow.ack, only=mentioned))
        problem_slots = [k for k in extraction.problems if k in self._specs]
        if problem_slots and recognized and problem_slots[0] in self._skipped:
            # given up on by voice once already (its re-asks and the keypad), and the caller says
            # the default we fell back on is wrong: it stays, unconfirmed, for a person to check
            # (the claims desk calls the number the caller called from), or a person takes the call
            slot = problem_slots[0]
            self._rejections[slot] = self._rejections.get(slot, 0) + 1
            self._reject_value(slot)
            return self._give_up(slot, "no_match")
        if problem_slots:  # e.g. a corrected ID number that fails its check: ask for it again
            self._repairs[problem_slots[0]] = self._repairs.get(problem_slots[0], 0) + 1
            self._problems[problem_slots[0]] = extraction.problems[problem_slots[0]].code
            self._reask = problem_slots[0]
            self._phase = "collect"
            return self._proceed("problem", problem_slots[0])
        if extraction.affirm is True and not extraction.correction:
            return self._complete()
        if negative:
            named = self._named_slot(text)
            if named and recognized and self._specs[named].recheck:
                return self._misheard(named)  # "错了，我叫<misheard>": again with its vocabulary, or a person
            if named:  # "电话不对": ask for that one again
                self._repairs[named] = self._repairs.get(named, 0) + 1
                self._reask = named
                self._phase = "collect"
                return self._proceed("progress", named)
            alike = self._sounds_like_slot(text) if recognized else None
            if alike is not None:  # "不是，越远" when the read-back said 越远: misheard, ask again
                return self._misheard(alike)
            doubt = self._most_doubtful() if recognized and extraction.correction else None
            if doubt is not None:  # "不对，<words we cannot place>": ask again what we are least sure of
                self._doubted.add(doubt)
                return self._recheck(doubt, correcting=True)
        self._no_match[CONFIRM] = self._no_match.get(CONFIRM, 0) + 1
        if self._no_match[CONFIRM] >= self.flow.confirm.limit:
            return self._give_up_rejected("no_match")
        if recognized and asked_which and extraction.affirm is None and not extraction.values:
            # "which" answered with words we cannot place (by voice: mostly a name said in free
            # speech): the whole read-back again would get the same answer; ask again, with its
            # own vocabulary, what we are least sure of
            doubt = self._most_doubtful()
            if doubt is not None:
                self._doubted.add(doubt)
                return self._recheck(doubt, correcting=True)
        if negative and asked_which and self.flow.confirm.item:
            # "which" did not help either: a third try the same way would not; go item by item
            return self._start_items()
        if negative:
            return self._ask_which()
        prefix = self.flow.no_match_prefix[min(self._no_match[CONFIRM], len(self.flow.no_match_prefix)) - 1]
        self._unclear += 1
        if self._unclear >= 2 and self.flow.confirm.yes_no:
            # neither a yes nor a no we know, twice: the read-back a third time would get the same
            # answer; ask for the yes or no alone (and the keypad), then item by item
            if self._unclear >= 3 and self.flow.confirm.item:
                return self._start_items()
            text = prefix + render(self.flow.confirm.yes_no, self.slots, self.flow.formats, self._today())
            return self._question(lambda: self._prompt(text, CONFIRM, self.flow.confirm.hints,
                                                       dtmf=self.flow.confirm.dtmf_yes is not None))
        return self._question(lambda: self._read_back(prefix))

    def _ask_which(self) -> list[Action]:
        which = render(self.flow.confirm.which, self.slots, self.flow.formats, self._today())
        self._asked_which = self._which_asked = True
        return self._question(lambda: self._prompt(which, CONFIRM, self.flow.confirm.hints, dtmf=False))

    def _on_spelling(self, slot: str, extraction: Extraction, answered: set[str]) -> list[Action]:
        """The answer to a value read back alone: yes, the value again or a new one (taken), or a
        bare no: then asked the narrower way once (`spell_again`), after that kept for the read-back."""
        self._spelling = None
        if slot in answered:
            self._corrected.add(slot)  # the caller's own check: not even the record overrides it
            if self._values[slot].source in SAID:
                self._values[slot] = replace(self._values[slot], checked=True)
        elif extraction.affirm is not True and (extraction.affirm is False or extraction.correction):
            spec = self._specs[slot]
            if spec.spell_again is not None and self._spelled.get(slot, 0) < 2 and self._room(2):
                return self._spell(slot, again=True)
        return self._proceed("progress")

    def _spell_due(self, slot: str) -> bool:
        """By voice, a value the caller said that no record confirms, not read back alone yet."""
        value = self._values.get(slot)
        return (self._voice and self._specs[slot].spell is not None and value is not None
                and value.source in SAID and slot not in self._spelled and slot not in self._corrected)

    def _room(self, questions: int) -> bool:
        """Turns left for this many more questions and the read-back with its answer."""
        return self._turn + self._silences + questions + 2 <= self.flow.max_turns

    def _spell(self, slot: str, again: bool = False) -> list[Action]:
        spec = self._specs[slot]
        self._spelled[slot] = self._spelled.get(slot, 0) + 1
        self._spelling = slot
        self._phase = "collect"
        template = (spec.spell_again if again else spec.spell) or ""
        text = ("" if again else self.flow.ack) + render(template, self.slots, self.flow.formats, self._today())
        return [self._prompt(text, slot, spec.hints, dtmf=False)]

    def _start_items(self) -> list[Action]:
        self._items = [slot for slot in self.flow.confirm.order if slot in self.slots]
        return self._next_item()

    def _next_item(self) -> list[Action]:
        """Confirm the next read-back item alone; when none is left, every item was confirmed."""
        assert self._items is not None
        while self._items and self._items[0] not in self.slots:
            self._items.pop(0)
        if not self._items:
            self._items, self._item = None, None
            return self._complete()
        slot = self._items[0]
        item = "".join(self._readback_items({slot}))
        text = render(self.flow.confirm.item, {**self.slots, "item": item}, self.flow.formats, self._today())
        self._phase = "confirm"
        self._item = slot
        spec = self._specs[slot]
        return self._question(lambda: self._prompt(text, slot, spec.hints, dtmf=False))

    def _on_item(self, extraction: Extraction, source: Source, asr_confidence: float | None) -> list[Action]:
        """The answer to one item: yes, a new value for it, or no (then that slot is asked alone)."""
        assert self._items is not None and self._item is not None
        slot, self._item = self._item, None
        before = self.slots
        values = {k: v for k, v in extraction.values.items() if k == slot and before.get(k) != v.value}
        if values:
            self._take(replace(extraction, values=values), source, asr_confidence, overwrite={slot}, correction=True)
            self._corrected.add(slot)
            self._refresh()
        if values or extraction.affirm is True or (slot in extraction.values and extraction.affirm is not False):
            self._items.pop(0)  # confirmed (or corrected): the next item
            return self._next_item()
        if extraction.affirm is False or extraction.correction:
            self._items.pop(0)
            self._rejections[slot] = self._rejections.get(slot, 0) + 1
            self._reject_value(slot)
            if self._rejections[slot] > 2:
                return self._give_up(slot, "no_match")
            return self._recheck(slot, correcting=True)  # asked alone, in its own words
        self._item_misses[slot] = self._item_misses.get(slot, 0) + 1
        if self._item_misses[slot] >= 2:
            return self._transfer("no_match")
        return self._next_item()  # not understood: the same item once more (a third time would not do)

    # ------------------------------------------------------------------ filling

    def _take(self, extraction: Extraction, source: Source, asr_confidence: float | None,
              overwrite: set[str], correction: bool = False) -> set[str]:
        """Store the extracted values; return the slots the utterance gave a value for."""
        correction = correction or extraction.correction
        answered: set[str] = set()
        for slot, found in extraction.values.items():
            if slot not in self._specs:
                continue
            answered.add(slot)
            current = self._values.get(slot)
            if current is not None and current.value == found.value:
                if not current.explicit and current.source in ("caller_id", "derived"):
                    self._set(slot, found, source, asr_confidence)  # a guess the caller has now said
                continue
            if current is not None and slot not in overwrite and not correction:
                if current.explicit or current.source == "record":
                    continue  # a side remark does not override what was given for the slot
            self._set(slot, found, source, asr_confidence)
            self._problems.pop(slot, None)
            if correction:
                self._corrected.add(slot)
        if extraction.use_caller_number:
            number = self._caller_number()
            for spec in self.flow.slots:
                if spec.caller_number and number:
                    self._values[spec.name] = _Value(number, 1.0, self._turn, "caller_id", True)
                    self._problems.pop(spec.name, None)
                    answered.add(spec.name)
        return answered

    def _set(self, slot: str, found: SlotValue, source: Source, asr_confidence: float | None) -> None:
        confidence = found.confidence if asr_confidence is None else min(found.confidence, asr_confidence)
        spec = self._specs[slot]
        # recognized speech (the shell passes the recognizer's confidence) heard without the
        # slot's own vocabulary
        checked = not (source == "speech" and asr_confidence is not None and spec.recheck
                       and spec.hints != self._hints
                       and (spec.recheck_below is None or found.confidence < spec.recheck_below))
        self._values[slot] = _Value(found.value, confidence, self._turn, source, True, checked)

    def _note_problems(self, extraction: Extraction, answered: set[str]) -> list[str]:
        """Remember invalid values (to word the next ask); return the slots they were for."""
        fresh = []
        for slot, problem in extraction.problems.items():
            if slot not in self._specs or slot in answered:
                continue
            current = self._values.get(slot)
            if current is not None and current.source == "record":
                continue  # the policy record gave it (e.g. found with the digits heard)
            if slot == self._expected or slot == self._reask or current is None or not current.explicit:
                self._problems[slot] = problem.code
                fresh.append(slot)
        return fresh

    def _reassign_same_kind(self, extraction: Extraction, negative: bool) -> Extraction:
        """At the read-back a bare name ("不对，谢金凤") may land in the wrong one of two name slots:
        it corrects the slot of that kind whose current value it is most like, not one it equals."""
        if not negative:
            return extraction
        kinds = [spec.kind for spec in self.flow.slots]
        # slots whose kind another slot shares (two person names): the only ones a value may move between
        kinded = [s for s in extraction.values if s in self._specs and kinds.count(self._specs[s].kind) > 1]
        if len(kinded) != 1:
            return extraction
        slot = kinded[0]
        if slot in extraction.introduced:
            return extraction  # "我叫刘婷": whose name it is was said
        found = extraction.values[slot]
        candidates = [
            other for other in self.flow.slot_names
            if self._specs[other].kind == self._specs[slot].kind and not self._derived_now(other)
            and (other == slot or other not in extraction.values)
        ]

        def likeness(other: str) -> int:
            current = self._values.get(other)
            if current is None:
                return 0
            if current.value == found.value:
                return -1  # already right: not the one being corrected
            return len(set(current.value) & set(found.value)) + (current.value[:1] == found.value[:1])

        best = max(candidates, key=lambda other: (likeness(other), other == slot), default=slot)
        if best == slot:
            return extraction
        values = {k: v for k, v in extraction.values.items() if k != slot}
        values[best] = replace(found, slot=best)
        return replace(extraction, values=values)

    def _named_slot(self, text: str) -> str | None:
        """A slot the caller names as wrong ("电话不对"), by the slot's aliases in the flow; the longest
        alias wins ("身份证号码" is the ID, not the phone's "号码")."""
        compact = "".join(text.split())
        best: dict[str, int] = {}
        for spec in self.flow.slots:
            for alias in spec.aliases:
                if alias in compact:
                    best[spec.name] = max(best.get(spec.name, 0), len(alias))
        if not best:
            return None
        longest = max(best.values())
        named = [name for name, length in best.items() if length == longest]
        return named[0] if len(named) == 1 else None

    def _refresh(self) -> None:
        """Derivations and policy records, after any change."""
        self._derive()
        self._consult_records()
        self._derive()

    def _derived_now(self, slot: str) -> bool:
        spec = self._specs[slot]
        return spec.derive is not None and spec.derive.holds(self.slots)

    def _derive(self) -> None:
        """Derived slots follow their sources. A copy (the insured's name is the caller's when the
        caller is the insured) also replaces what the caller said before the condition became
        true - the later statement wins; a constant (本人 when the names agree) only fills a gap."""
        for spec in self.flow.slots:
            rule = spec.derive
            if rule is None:
                continue
            current = self._values.get(spec.name)
            values = self.slots
            if not rule.holds(values):
                if current is not None and current.source == "derived":
                    del self._values[spec.name]
                continue
            if rule.source_slot is not None:
                source = self._values.get(rule.source_slot)
                if source is None:
                    continue
                value, confidence, turn = source.value, source.confidence, source.turn
            else:
                basis = [self._values[s] for s in (*rule.when, *rule.equal) if s in self._values]
                value, turn = rule.value or "", max((b.turn for b in basis), default=self._turn)
                confidence = min((b.confidence for b in basis), default=1.0)
            if current is not None and (current.value == value or current.source == "record"):
                continue
            if current is not None and current.explicit:
                if rule.source_slot is None:
                    continue
                condition_turn = max((self._values[s].turn for s in rule.when if s in self._values), default=0)
                if current.turn >= condition_turn:
                    continue
            self._values[spec.name] = _Value(value, confidence, turn, "derived", False)

    def _consult_records(self) -> None:
        spec = self.flow.records
        if spec is None or self._records is None:
            return
        # each argument from the first of its slots that is filled; names are tried one by one
        # (the insured's, then e.g. the caller's: the caller is often the policy holder)
        query = {arg: next(self._values[s].value for s in slots if s in self._values)
                 for arg, slots in spec.query.items() if any(s in self._values for s in slots)}
        names = [self._values[s].value for s in spec.query.get("name", ()) if s in self._values] or [None]
        guessed = "id_number" not in query and bool(self._id_guess)
        if guessed:
            query["id_number"] = self._id_guess or ""  # heard, but invalid: a record an edit or two away
        if "id_number" not in query and "phone" not in query:
            return
        key = (query.get("id_number"), query.get("phone"), tuple(names))
        if key != self._last_query:
            self._last_query = key
            record = None
            for name in dict.fromkeys(names):
                found = self._records.find(query.get("id_number"), query.get("phone"), name)
                if len(found) == 1:
                    record = found[0]
                    break
            if record is None and guessed and self._voice:
                # an invalid ID that is a record's with a repeated digit heard once (五五 as 五)
                said_twice = getattr(self._records, "said_twice", None)
                found = said_twice(query["id_number"]) if said_twice else []
                record = found[0] if len(found) == 1 else None
            if record is None and "id_number" in query and self._caller_number():
                # a near-miss ID confirmed by the caller's own number being the policy's phone
                near_id = getattr(self._records, "near_id", None)
                found = near_id(query["id_number"], self._caller_number(), None) if near_id else []
                record = found[0] if len(found) == 1 else None
            by_id = ("id_number" in query and not guessed) or (record is not None and self._near_id_match(record, query))
            if record is not None and not by_id and not self._agrees_by_name(record, query):
                record = None  # a phone alone may be the caller's own policy, not the insured's
            if record is None and self._record is not None and (
                    query.get("id_number") == self._record.insured_id_number):
                record = self._record  # still the insured's ID: keep it whatever else the query says
            if record != self._record:
                self._drop_record_values()
                self._record, self._record_turn = record, self._turn
                if record is not None:
                    for slot, field_name in spec.take.items():
                        self._from_record(slot, getattr(record, field_name), override=True)
        self._spell_by_record()
        self._apply_self_rule()

    def _near_id_match(self, record: PolicyRecord, query: dict[str, str]) -> bool:
        """Was the record found by an ID (heard, maybe invalid) within a couple of edits of its own?"""
        heard = (query.get("id_number") or "").upper()
        return bool(heard) and edit_distance(heard, record.insured_id_number.upper(), 2) <= 2

    def _agrees_by_name(self, record: PolicyRecord, query: dict[str, str]) -> bool:
        rule = self.flow.records.self_rule if self.flow.records else None
        if query.get("name") and same_person(query["name"], record.insured_name):
            return True
        return bool(rule and rule.same_person and all(
            slot in self._values and same_person(self._values[slot].value, getattr(record, field_name))
            for field_name, slot in rule.same_person.items()
        ))

    def _spell_by_record(self) -> None:
        """Names the caller said that sound like the record's (homophones: 假钞 for 贾超) take the
        record's spelling; a correction too (by voice it carries only the sound: 巫泽 for 邬泽),
        unless the caller said no to that spelling."""
        spec = self.flow.records
        record = self._record
        if spec is None or record is None:
            return
        for slot, rec_fields in spec.sounds_like.items():
            current = self._values.get(slot)
            if current is None or current.source not in (*SAID, "derived"):
                continue
            if slot in self._corrected and not self._voice:
                continue  # typed: the caller wrote the characters they meant
            match = best_match(current.value, [getattr(record, f) for f in rec_fields])
            if match is not None and match not in self._rejected.get(slot, set()):
                self._values[slot] = replace(current, value=match, source="record", confidence=1.0, checked=True)

    def _apply_self_rule(self) -> None:
        """The records' self rule (the caller is the insured), else their holder rule (the caller
        is the policy holder, reporting for someone else): what each suggests, or withdrawn."""
        spec = self.flow.records
        rule = spec.self_rule if spec else None
        holder = spec.holder_rule if spec else None
        if rule is None and holder is None:
            return
        record = self._record
        values = self.slots
        is_self = rule is not None and record is not None and (
            holds(rule.when, values)
            or (
                all(slot not in values for slot in rule.when)
                and bool(rule.same_person)
                and all(slot in values and getattr(record, f) == values[slot] for f, slot in rule.same_person.items())
            )
        )
        if not is_self:
            is_holder = (holder is not None and record is not None and record.holder_name != record.insured_name
                         and all(slot in values and (getattr(record, f) == values[slot]
                                                     or self._holder_by_sound(slot, getattr(record, f)))
                                 for f, slot in holder.same_person.items()))
            keep = holder.suggest if holder is not None and is_holder else {}
            for slot in list(self._suggested):
                if slot not in keep:
                    if slot in self._values and self._values[slot].source == "record":
                        del self._values[slot]
                    self._suggested.discard(slot)
            for slot, field_name in keep.items():
                self._suggest(slot, getattr(record, field_name))
            return
        for slot, accepted in rule.when.items():
            if slot not in self._values:
                self._from_record(slot, accepted[0], override=False)
                self._suggested.add(slot)
        for slot, field_name in rule.take.items():
            self._from_record(slot, getattr(record, field_name), override=True)
        for slot, field_name in rule.suggest.items():
            self._suggest(slot, getattr(record, field_name))

    def _holder_by_sound(self, slot: str, name: str) -> bool:
        """By voice, is the caller's name as heard (`slot`) the record holder's `name`, the given
        names alike even if the surname is garbled (聂明磊 heard as 建明伟)? The holder of a policy
        on someone else is the likeliest caller about it, so less likeness is asked of that name
        than of any other; it then takes the holder's spelling (the read-back lets the caller
        say no, and a spelling they said no to is not taken again)."""
        current = self._values.get(slot)
        if (current is None or current.source != "speech" or not name or name in self._rejected.get(slot, set())
                or given_name_similarity(current.value, name) < HOLDER_GIVEN_NAME_ALIKE
                or name_similarity(current.value, name) < HOLDER_NAME_ALIKE):
            return False
        self._values[slot] = replace(current, value=name, source="record", confidence=1.0, checked=True)
        return True

    def _suggest(self, slot: str, value: str) -> None:
        """A record's value for an empty or merely defaulted slot (withdrawn if the rule stops holding)."""
        current = self._values.get(slot)
        if current is None or (not current.explicit and current.source == "caller_id"):
            self._from_record(slot, value, override=False)
            self._suggested.add(slot)

    def _from_record(self, slot: str, value: str, override: bool) -> None:
        """`override`: the record wins over recognition (never over a correction)."""
        if not value:
            return
        current = self._values.get(slot)
        if current is None:
            self._values[slot] = _Value(value, 1.0, self._record_turn, "record", False)
        elif current.value == value:
            if override and current.source != "record":  # what the caller said, confirmed by the record
                self._values[slot] = replace(current, source="record", confidence=1.0)
        elif override and slot not in self._corrected:
            self._values[slot] = _Value(value, 1.0, self._record_turn, "record", current.explicit)

    def _drop_record_values(self) -> None:
        """The record no longer applies: what it alone gave goes, what the caller said stays."""
        for slot in list(self._values):
            value = self._values[slot]
            if value.source == "record":
                if value.explicit:
                    self._values[slot] = replace(value, source="speech" if self._voice else "text")
                else:
                    del self._values[slot]
        self._suggested.clear()

    def _caller_number(self) -> str | None:
        digits = "".join(ch for ch in self._context.caller_number or "" if ch.isdigit())
        for prefix in ("0086", "86"):
            if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
                digits = digits[len(prefix):]
        return digits or None

    def _apply_defaults(self) -> None:
        changed = False
        for spec in self.flow.slots:
            if spec.name not in self._values and spec.default == "caller_number":
                number = self._caller_number()
                if number:
                    self._values[spec.name] = _Value(number, 1.0, 0, "caller_id", False)
                    changed = True
        if changed:
            self._refresh()

    def _changed_since(self, before: dict[str, str]) -> set[str]:
        now = self.slots
        return {k for k in set(before) | set(now) if before.get(k) != now.get(k)}

    def _open(self, slot: str) -> bool:
        """Still to be answered: empty, or filled but said to be wrong."""
        return not self._satisfied(slot) or slot == self._reask

    def _satisfied(self, slot: str) -> bool:
        return slot in self._values or slot in self._skipped

    def _needed(self, slot: str) -> bool:
        spec = self._specs[slot]
        if self._satisfied(slot):
            return False
        if spec.ask_if and not holds(spec.ask_if, {**self.flow.values, **self.slots}):
            return False  # not asked on this call (yet): its condition does not hold
        if spec.derive is not None and spec.derive.holds(self.slots):
            return False  # filled as soon as its source is
        if spec.default == "caller_number" and self._caller_number() and (spec.default_by_voice or not self._voice):
            return False  # defaulted at the read-back
        return True

    # ------------------------------------------------------------------ what next

    def _question(self, make: Callable[[], Prompt]) -> list[Action]:
        """A prompt that wants an answer, unless the call is out of turns: each question costs an
        answer (or a silence), and the call still needs its last prompt after it."""
        if self._turn + self._silences + 2 > self.flow.max_turns:
            return self._give_up_rejected("too_many_turns")
        return [make()]

    def _proceed(self, reason: Reason, focus: str | None = None) -> list[Action]:
        if self._turn + self._silences + 2 > self.flow.max_turns:
            return self._give_up_rejected("too_many_turns")
        expected = self._expected
        if expected in self._specs and reason in ("no_match", "no_input", "problem") and self._open(expected):
            spec = self._specs[expected]
            if (self._no_match.get(expected, 0) >= spec.limits.no_match
                    or self._no_input.get(expected, 0) >= spec.limits.no_input):
                if spec.expect is not None and self._no_match.get(expected, 0) >= spec.limits.no_match:
                    # a check that failed: the call ends here, without it (the flow's outcomes say how)
                    self._skipped.add(expected)
                    return self._complete()
                defaulted = spec.default == "caller_number" and self._caller_number() is not None
                if not spec.optional and not (defaulted and self._voice and not spec.default_by_voice):
                    if self._set_aside(expected):
                        return self._proceed("progress")
                    return self._transfer("no_input" if reason == "no_input" else "no_match")
                # optional, or (by voice) a slot we only asked instead of assuming its default:
                # the default it is, read back for the caller to confirm
                self._skipped.add(expected)
                if self._reask == expected:
                    self._reask = None
                reason = "progress"
        slot = self._reask if self._reask else None
        if slot is None and focus is not None and (self._needed(focus) or focus in self._problems):
            slot = focus
        if slot is None:
            slot = next((name for name in self.flow.slot_names
                         if self._needed(name) and name not in self._deferred and not self._asked_late(name)), None)
        if slot is None:
            slot = next((name for name in self.flow.slot_names if self._needed(name)), None)
        self._deferred.discard(slot or "")
        if slot is None:
            self._apply_defaults()
            slot = next((name for name in self.flow.slot_names if self._needed(name)), None)
        if slot is None:
            # values heard without their vocabulary, that no record confirmed: once more, with it
            due = next((name for name in self.flow.slot_names if self._recheck_due(name)), None)
            if due is not None:
                return self._recheck(due)
            due = next((name for name in self.flow.slot_names if self._spell_due(name)), None)
            if due is not None and self._readback is None and self._room(1):
                return self._spell(due)
        if slot is None:
            if not any(name in self.slots for name in self.flow.confirm.order):
                return self._complete()  # nothing to read back (`confirm: none`, or no slot confirmed)
            if self._items is not None:  # a slot asked again during item-by-item confirmation
                return self._next_item()
            self._phase = "confirm"
            return [self._read_back(self.flow.ack if reason == "progress" else "")]
        self._phase = "collect"
        return [self._ask(slot, reason)]

    def _asked_late(self, slot: str) -> bool:
        """By voice, a slot asked instead of assuming its default comes last: a number the
        recognizer cannot get (keypad, then the default) must not cost the rest of the report."""
        spec = self._specs[slot]
        return self._voice and spec.default == "caller_number" and not spec.default_by_voice

    def _recheck_due(self, slot: str) -> bool:
        value = self._values.get(slot)
        return (value is not None and not value.checked and value.source in SAID
                and self._can_recheck(slot) and self._rechecked.get(slot, 0) == 0)

    def _can_recheck(self, slot: str) -> bool:
        spec = self._specs[slot]
        return spec.recheck is not None and self._rechecked.get(slot, 0) < 2

    def _recheck(self, slot: str, correcting: bool = False) -> list[Action]:
        """Ask for a filled slot again, with its hints, in the slot's `recheck` words (`correcting`:
        the caller said at the read-back that it is wrong)."""
        spec = self._specs[slot]
        if correcting:
            self._correcting = slot
            self._repairs[slot] = self._repairs.get(slot, 0) + 1
        # the first repair did not fix it (or the plain re-asks are spent): the narrower question
        narrower = self._repairing(slot) or (spec.recheck is not None and spec.repair is not None
                                             and slot not in self._repaired and not self._can_recheck(slot))
        if spec.recheck is None and not narrower:
            self._reask = slot
            self._phase = "collect"
            return self._proceed("progress", slot)
        if self._turn + self._silences + 2 > self.flow.max_turns:
            return self._give_up(slot, "too_many_turns") if correcting else self._transfer("too_many_turns")
        self._rechecked[slot] = self._rechecked.get(slot, 0) + 1
        self._rechecking = slot
        self._reask = slot
        self._phase = "collect"
        self._problems.pop(slot, None)
        if narrower:
            self._repaired.add(slot)
            keypad = spec.dtmf is not None
            if keypad:
                self._keypad.add(slot)
                self._buffer = ""
            text = render(spec.repair or "", self.slots, self.flow.formats, self._today())
            return [self._prompt(text, slot, spec.hints, dtmf=keypad, alternatives=self._repair_alternatives(slot))]
        text = render(spec.recheck, self.slots, self.flow.formats, self._today())
        return [self._prompt(text, slot, spec.hints, dtmf=False, alternatives=self._repair_alternatives(slot))]

    def _repair_alternatives(self, slot: str) -> int:
        """N-best readings wanted with the answer: for a slot asked again because the caller rejected it."""
        return REPAIR_ALTERNATIVES if self._correcting == slot and self._rejected.get(slot) else 0

    def _reject_value(self, slot: str) -> None:
        if slot in self.slots:
            self._rejected.setdefault(slot, set()).add(self.slots[slot])

    def _repairing(self, slot: str) -> bool:
        """Asked again after the caller said it is wrong, a second time: a `repair` is due."""
        return self._specs[slot].repair is not None and self._repairs.get(slot, 0) >= 2

    def _repair_left(self, slot: str) -> bool:
        return self._specs[slot].repair is not None and slot not in self._repaired

    def _misheard(self, slot: str) -> list[Action]:
        """The caller says at the read-back that `slot` is wrong, and what they said instead we
        heard no better: ask for it again with its vocabulary; when that has been tried (twice),
        a person takes over rather than the caller repeating it to no end."""
        self._rejections[slot] = self._rejections.get(slot, 0) + 1
        self._reject_value(slot)
        if self._can_recheck(slot) or self._repair_left(slot):
            return self._recheck(slot, correcting=True)
        self._no_match[CONFIRM] = self._no_match.get(CONFIRM, 0) + 1
        if self._rejections[slot] >= 2 or self._no_match[CONFIRM] >= self.flow.confirm.limit:
            doubt = self._most_doubtful(assumed_only=True)
            if doubt is not None and self._no_match[CONFIRM] < self.flow.confirm.limit:
                self._doubted.add(doubt)  # before giving up: what else we only assumed
                return self._recheck(doubt, correcting=True)
            return self._give_up(slot, "no_match")
        return self._question(lambda: self._read_back(self.flow.ack, only={slot}))

    def _only_about(self, extraction: Extraction) -> Extraction:
        """A correction that names its slot: only values for that slot (or one of its kind)."""
        about = extraction.about or ""
        kind = self._specs[about].kind

        def keep(slot: str) -> bool:
            return slot == about or (kind is not None and slot in self._specs and self._specs[slot].kind == kind)

        return replace(extraction, values={k: v for k, v in extraction.values.items() if keep(k)},
                       problems={k: v for k, v in extraction.problems.items() if keep(k)})

    def _hold_back_unchecked(self, extraction: Extraction) -> tuple[Extraction, str | None]:
        """A read-back correction heard without its slot's vocabulary (names in free speech are
        mostly wrong) does not replace a value heard with it or given by the record: that slot is
        asked again with its vocabulary instead. Returns the extraction without such values and
        the first slot held back."""
        held: list[str] = []
        values = dict(extraction.values)
        for slot, found in extraction.values.items():
            spec = self._specs.get(slot)
            current = self._values.get(slot)
            if (spec is None or not spec.recheck or spec.hints == self._hints or current is None
                    or not current.checked or current.source not in (*SAID, "record")
                    or current.value == found.value):
                continue
            rejected = current.value in self._rejected.get(slot, set())
            self._rejected.setdefault(slot, set()).add(current.value)
            if rejected and found.confidence > 0.5:
                continue  # said "no" to it twice: what the caller says instead, if it is like a name
            del values[slot]
            held.append(slot)
        if not held:
            return extraction, None
        first = next(s for s in self.flow.slot_names if s in held)
        return replace(extraction, values=values), first

    def _most_doubtful(self, assumed_only: bool = False) -> str | None:
        """The value we are least sure of, for a "no" at the read-back that names nothing we can
        make out: a number we assumed (the caller's own number, the policy's phone), then a value
        heard by the recognizer (not confirmed by a record) that can still be asked again."""
        order = self.flow.confirm.order
        for slot in order:
            value = self._values.get(slot)
            if (value is not None and slot not in self._doubted and not value.explicit
                    and value.source in ("caller_id", "record") and self._specs[slot].caller_number):
                return slot
        for slot in () if assumed_only else order:
            value = self._values.get(slot)
            if (value is not None and slot not in self._doubted and value.source in SAID
                    and self._specs[slot].recheck and self._can_recheck(slot)):
                return slot
        return None

    def _sounds_like_slot(self, text: str) -> str | None:
        """The slot with a `recheck` whose value the caller's words sound like ("不是，越远" when we
        have 越远): they are repeating what we misheard."""
        heard = "".join(ch for ch in text if "\u4e00" <= ch <= "\u9fff")
        best, best_score = None, 0.0
        for slot in self.flow.slot_names:
            value = self._values.get(slot)
            if value is None or not self._specs[slot].recheck or value.source == "record":
                continue  # the record's value was not heard: not what we misheard
            target = "".join(ch for ch in value.value if "\u4e00" <= ch <= "\u9fff")
            n = len(target)
            if not n or len(heard) < n:
                continue
            score = max(name_similarity(heard[i:i + n], target) for i in range(len(heard) - n + 1))
            if score > best_score:
                best, best_score = slot, score
        return best if best_score >= 0.75 else None

    def _defer(self, slot: str, asr_confidence: float | None) -> bool:
        """An ID the recognizer got wrong (invalid digits) and no record near them yet: ask the other
        questions first - the insured's name they bring may find the record with the digits heard
        - and this one again at the end (once; typed or keyed numbers are asked again at once)."""
        spec = self.flow.records
        if (asr_confidence is None or spec is None or self._records is None or slot in self._deferrals
                or slot not in spec.query.get("id_number", ()) or not self._id_guess or self._record is not None):
            return False
        if not any(self._needed(other) for other in self.flow.slot_names if other != slot):
            return False
        self._deferred.add(slot)
        self._deferrals.add(slot)
        return True

    def _set_aside(self, slot: str) -> bool:
        """A required slot not understood its `no_match` times: by voice, the other questions first
        and this one once more at the end, rather than an agent at the second question with nothing
        collected (a name the recognizer garbles may still come from the policy record the other
        answers find). Once; at the end a failure goes to a person with the report as it stands."""
        if not self._voice or slot in self._deferrals or self._no_input.get(slot, 0) >= self._specs[slot].limits.no_input:
            return False
        if not any(self._needed(other) for other in self.flow.slot_names if other != slot):
            return False
        self._deferred.add(slot)
        self._deferrals.add(slot)
        self._no_match[slot] = self._specs[slot].limits.no_match - 1  # one more try when it comes back
        if self._reask == slot:
            self._reask = None
        return True

    def _note_id_guess(self, extraction: Extraction) -> None:
        spec = self.flow.records
        if spec is None:
            return
        for slot in spec.query.get("id_number", ()):
            problem = extraction.problems.get(slot)
            if problem is not None and problem.heard and slot not in extraction.values:
                self._id_guess = problem.heard
            elif slot in extraction.values:
                self._id_guess = None

    def _ask(self, slot: str, reason: Reason) -> Prompt:
        spec = self._specs[slot]
        failures = self._no_match.get(slot, 0) + self._no_input.get(slot, 0)
        prefix = ""
        if reason == "start":
            prefix = self.flow.greeting
        elif reason == "progress":
            prefix = self.flow.ack
        elif reason == "no_input" and slot == self._expected:
            count = self._no_input.get(slot, 1)
            prefix = self.flow.no_input_prefix[min(count, len(self.flow.no_input_prefix)) - 1]
        elif reason == "no_match" and slot == self._expected:
            count = self._no_match.get(slot, 1)
            prefix = self.flow.no_match_prefix[min(count, len(self.flow.no_match_prefix)) - 1]
        keypad = spec.dtmf is not None and (slot in self._keypad or failures >= spec.dtmf.after)
        code = self._problems.pop(slot, None)
        if slot == self._reask and self._repairing(slot):
            # said to be wrong again after one re-ask: the narrower question (keypad, a choice list)
            keypad = spec.dtmf is not None
            if keypad:
                self._keypad.add(slot)
            body = spec.repair or ""
            if code and code in spec.problems and reason == "problem":
                prefix = spec.problems[code]
        elif keypad and spec.dtmf is not None:
            self._keypad.add(slot)
            body = spec.dtmf.prompt
            if reason == "problem":
                prefix = self.flow.no_match_prefix[min(failures, len(self.flow.no_match_prefix)) - 1]
        elif code and code in spec.problems:
            body = spec.problems[code]
            if reason == "problem":
                prefix = ""
        else:
            prompts = spec.prompts_for(self.slots)
            body = prompts[min(failures, len(prompts) - 1)]
        self._buffer = ""
        hints = spec.hints if reason != "start" or self.flow.start_hints else None
        return self._prompt(prefix + render(body, self.slots, self.flow.formats, self._today()), slot,
                            hints, dtmf=keypad)

    def _read_back(self, prefix: str, only: set[str] | None = None) -> Prompt:
        """The whole form, or after a correction only what changed (`only`: these slots)."""
        confirm = self.flow.confirm
        changed = only
        if changed is None and self._readback is not None:
            changed = self._changed_since(self._readback)
        values = self.slots
        items = self._readback_items(changed) if changed else []
        if items:
            changes = confirm.separator.join(items)
            text = render(confirm.changed, {**values, "changes": changes}, self.flow.formats, self._today())
        else:
            text = (render(confirm.intro, values, self.flow.formats, self._today())
                    + confirm.separator.join(self._readback_items(None))
                    + render(confirm.question, values, self.flow.formats, self._today()))
        self._readback = values
        self._phase = "confirm"
        if prefix == self.flow.ack and items:
            prefix = ""  # the "changed" wording acknowledges by itself
        return self._prompt(prefix + text, CONFIRM, confirm.hints, dtmf=confirm.dtmf_yes is not None)

    def _readback_items(self, only: set[str] | None) -> list[str]:
        values = self.slots
        items = []
        for slot in self.flow.confirm.order:
            if slot not in values or (only is not None and slot not in only):
                continue
            spec = self._specs[slot]
            variant = pick(spec.readback, values, self._values[slot].source)
            template = variant.text if variant is not None else "{" + slot + "}"
            text = render(template, values, self.flow.formats, self._today())
            if text:
                items.append(text)
        return items

    def _prompt(self, text: str, slot: str | None, hints: tuple[str, ...] | None, dtmf: bool,
                alternatives: int = 0) -> Prompt:
        self._expected = slot
        self._hints = hints
        return Prompt(text=text, slot=slot, slots=self.slots, hints=hints, dtmf=dtmf,
                      alternatives=alternatives if hints else 0)

    def _today(self) -> date:
        return self._context.started_at.date()  # the call's own zone, as the extractor resolves dates

    # ------------------------------------------------------------------ endings

    def _report(self, status: ReportStatus) -> Report:
        result = self.flow.result
        stored = result.store if result is not None and result.store else self.flow.slot_names
        return Report(
            status=status,
            slots={name: value for name, value in self.slots.items() if name in stored},
            details={
                name: SlotDetail(v.value, round(v.confidence, 3), v.turn, v.source, name not in self._unresolved)
                for name in stored
                if (v := self._values.get(name)) is not None
            },
            policy_number=self._record.policy_number if self._record else None,
            flow=self.flow.name,
            topic=(result.topic if result is not None else "") or self.flow.name,
        )

    def _complete(self) -> list[Action]:
        self._phase = "done"
        closing = pick(self.flow.closing, self.slots)
        text = render(closing.text if closing else "", self.slots, self.flow.formats, self._today())
        outcome = next((rule.name for rule in self.flow.outcomes if holds(rule.when, self.slots)), "complete")
        return [self._report(outcome), Prompt(text, None, self.slots), Hangup("completed")]

    def _refuse(self) -> list[Action]:
        """The caller declines (不方便, 别再打了): what they said so far is the report, `refused`."""
        self._phase = "done"
        variant = pick(self.flow.refused, self.slots)
        text = render(variant.text if variant else "", self.slots, self.flow.formats, self._today())
        return [self._report("refused"), Prompt(text, None, self.slots), Hangup("refused")]

    def _give_up(self, slot: str, reason: str) -> list[Action]:
        """The caller said at the read-back that `slot` is wrong, and asking it again every way the
        flow has (or the turns left) did not get it right. With `confirm.unresolved` in the flow the
        call ends with the report stored and that item marked unconfirmed (`SlotDetail.confirmed`),
        for a person to check with the caller, rather than the caller waiting for an agent to ask
        everything again; without it, a person takes the call."""
        unresolved = self.flow.confirm.unresolved
        if not self._rejections.get(slot):
            # asked again only because we doubted it: the item the caller did reject, if any, is
            # the one to leave for a person
            slot = self._most_rejected() or slot
        if (not unresolved or slot not in self.slots or not (self._rejections.get(slot) or slot in self._doubted)
                or any(self._needed(name) for name in self.flow.slot_names)):
            return self._transfer(reason)  # (a slot never got a value: that report needs a person)
        # what we asked again after a "no" we could not place stays unconfirmed with it
        self._unresolved.update({slot} | (self._doubted & set(self.slots)))
        actions = self._complete()
        said = render(unresolved, self.slots, self.flow.formats, self._today())
        return [replace(a, text=said + a.text) if isinstance(a, Prompt) else a for a in actions]

    def _give_up_rejected(self, reason: str) -> list[Action]:
        """The read-back keeps being rejected in words we cannot place: the item the caller already
        rejected most (asked again every way and still wrong) is the one they mean; give up on it as
        `_give_up` does. Nothing rejected, but an item asked again because we doubted it: that one.
        Neither: a person takes the call."""
        # nothing rejected, but asked again what we doubted and still told no: that item
        slot = self._most_rejected() or next((s for s in self.flow.confirm.order if s in self._doubted), None)
        if slot is None:
            return self._transfer(reason)
        return self._give_up(slot, reason)

    def _most_rejected(self) -> str | None:
        """The read-back item the caller said is wrong most often, if any."""
        rejected = [s for s in self.flow.confirm.order if self._rejections.get(s)]
        return max(rejected, key=lambda s: self._rejections[s]) if rejected else None

    def _transfer(self, reason: str) -> list[Action]:
        self._phase = "done"
        actions: list[Action] = []
        if self._values:
            actions.append(self._report("transferred"))
        variant = pick(self.flow.transfer, self.slots)
        text = render(variant.text if variant else "", self.slots, self.flow.formats, self._today())
        actions += [Prompt(text, None, self.slots), Transfer(reason)]
        return actions


__all__ = ["CONFIRM", "Dialogue", "Extractor", "RecordLookup"]
