"""Policy records: confirm names and numbers against the insurer's data instead of trusting recognition.

`RecordLookup` is what the engine needs; the gateway may implement it over its database.
`RecordIndex` is an in-memory implementation (pure Python) for tests, small deployments and
the shared evaluation data (`load_policies_csv`).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterable, Protocol

CSV_FIELDS = (
    "policy_number",
    "product",
    "holder_name",
    "insured_name",
    "insured_id_number",
    "phone",
    "start_date",
    "expiry_date",
)
# Columns an import may also carry (for reminders): absent ones leave a stored value as it is.
OPTIONAL_CSV_FIELDS = (
    "wechat_openid",
    "consent_sms",
    "consent_wechat",
    "consent_voice",
    "consent_marketing",
)


@dataclass(frozen=True)
class PolicyRecord:
    policy_number: str
    product: str
    holder_name: str
    insured_name: str
    insured_id_number: str
    phone: str
    start_date: date | None
    expiry_date: date | None


class RecordLookup(Protocol):
    def find(self, id_number: str | None, phone: str | None, name: str | None) -> list[PolicyRecord]:
        """Records matching the (possibly misrecognized) ID number / phone / insured's name."""
        ...


def _digits(phone: str | None) -> str:
    return "".join(ch for ch in phone or "" if ch.isdigit())


def _norm_id(id_number: str | None) -> str:
    return (id_number or "").strip().upper()


def edit_distance(a: str, b: str, limit: int = 2) -> int:
    """Levenshtein distance, stopping early once every path exceeds `limit` (returns limit + 1)."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return min(previous[-1], limit + 1)


class RecordIndex:
    """In-memory `RecordLookup` that tolerates recognition errors.

    Matching, in order:
    1. the ID number exactly;
    2. an ID number within edit distance `max_id_distance` of a record whose insured's (or
       holder's) name, or phone, also agrees - a lone near-miss ID is not evidence enough;
    3. the phone exactly (narrowed to the records whose name agrees, when some do).
    A name alone never matches: names are not unique. A name "agrees" when it is the record's
    name or sounds like it (`speech.understanding.phonetic.same_person`: the recognizer writes
    homophones, "假钞" for 贾超); an exact name wins over one that only sounds alike.
    """

    def __init__(self, records: Iterable[PolicyRecord], max_id_distance: int = 2) -> None:
        self.records = tuple(records)
        self.max_id_distance = max_id_distance
        self._by_id: dict[str, list[PolicyRecord]] = defaultdict(list)
        self._by_phone: dict[str, list[PolicyRecord]] = defaultdict(list)
        self._by_name: dict[str, list[PolicyRecord]] = defaultdict(list)
        for record in self.records:
            self._by_id[_norm_id(record.insured_id_number)].append(record)
            self._by_phone[_digits(record.phone)].append(record)
            self._by_name[record.insured_name].append(record)
            if record.holder_name != record.insured_name:
                self._by_name[record.holder_name].append(record)
        self._ids = list(self._by_id)

    def __len__(self) -> int:
        return len(self.records)

    def find(self, id_number: str | None, phone: str | None, name: str | None) -> list[PolicyRecord]:
        id_key, phone_key = _norm_id(id_number), _digits(phone)
        if id_key:
            exact = self._by_id.get(id_key)
            if exact:
                return list(exact)
            near = self.near_id(id_key, phone_key, name)
            if near:
                return near
        if phone_key:
            by_phone = self._by_phone.get(phone_key, [])
            if name:
                agreeing = _agreeing(by_phone, name)
                if agreeing:
                    return agreeing
            return list(by_phone)
        return []

    def near_id(self, id_key: str, phone_key: str = "", name: str | None = None) -> list[PolicyRecord]:
        """Records whose ID is within `max_id_distance` edits of `id_key` and whose phone or
        (insured's or holder's) name agrees; the exact name or phone first, then a name by sound."""
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein

        limit = self.max_id_distance
        # Every ID within the distance (C speed over the whole index), then the agreeing ones.
        close = process.extract(id_key, self._ids, scorer=Levenshtein.distance, score_cutoff=limit, limit=None)
        candidates = _unique(r for key, _, _ in close for r in self._by_id[key])
        if not candidates:
            return []
        exact = [r for r in candidates if (name and name in (r.insured_name, r.holder_name))
                 or (phone_key and _digits(r.phone) == phone_key)]
        if exact:
            return exact
        return _agreeing(candidates, name) if name else []

    def said_twice(self, id_key: str) -> list[PolicyRecord]:
        """Records whose ID is `id_key` (heard, invalid) with a repeated digit put right: the
        recognizer hears a digit said twice as one (二二 as 二; up to two such) or, less often,
        one as two. The match must be exact: a valid ID in the records one such slip away is
        evidence enough on its own, unlike an ID a couple of arbitrary edits away (`near_id`)."""
        heard = _norm_id(id_key)
        if not heard or len(heard) not in (16, 17, 19):
            return []
        candidates = {heard}
        for _ in range(max(18 - len(heard), 0)):  # a digit said twice, heard once: double it back
            candidates = {c[:i] + c[i] + c[i:] for c in candidates for i in range(len(c))}
        if len(heard) == 19:  # one digit heard twice: drop one of a doubled pair
            candidates = {heard[:i] + heard[i + 1:] for i in range(1, len(heard)) if heard[i] == heard[i - 1]}
        return _unique(r for c in sorted(candidates) for r in self._by_id.get(c, ()))


def _agreeing(records: Iterable[PolicyRecord], name: str) -> list[PolicyRecord]:
    """The records whose insured's or holder's name is `name`, or else sounds like it."""
    records = list(records)
    exact = [r for r in records if name in (r.insured_name, r.holder_name)]
    if exact:
        return exact
    from speech.understanding.phonetic import same_person

    return [r for r in records if same_person(name, r.insured_name) or same_person(name, r.holder_name)]


def _unique(records: Iterable[PolicyRecord]) -> list[PolicyRecord]:
    seen: dict[str, PolicyRecord] = {}
    for record in records:
        seen.setdefault(record.policy_number, record)
    return list(seen.values())


class PolicyCsvError(ValueError):
    pass


def load_policies_csv(path: str | Path) -> list[PolicyRecord]:
    """Read a policy CSV (header: policy_number, product, holder_name, insured_name,
    insured_id_number, phone, start_date, expiry_date; dates ISO)."""
    path = Path(path)
    records: list[PolicyRecord] = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [name for name in CSV_FIELDS if name not in (reader.fieldnames or ())]
        if missing:
            raise PolicyCsvError(f"{path}: header lacks {', '.join(missing)}")
        for row in reader:
            try:
                values = {name: (row[name] or "").strip() for name in CSV_FIELDS}
                records.append(
                    PolicyRecord(
                        policy_number=values["policy_number"],
                        product=values["product"],
                        holder_name=values["holder_name"],
                        insured_name=values["insured_name"],
                        insured_id_number=values["insured_id_number"].upper(),
                        phone=values["phone"],
                        start_date=date.fromisoformat(values["start_date"]),
                        expiry_date=date.fromisoformat(values["expiry_date"]),
                    )
                )
            except (ValueError, AttributeError) as e:
                raise PolicyCsvError(f"{path}:{reader.line_num}: {e}") from None
    return records
