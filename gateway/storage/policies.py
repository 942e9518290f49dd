"""Policy records: import (CSV or JSON, upsert by policy number) and the in-memory look-up index."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from speech.dialogue.records import CSV_FIELDS, OPTIONAL_CSV_FIELDS, PolicyRecord, RecordIndex
from speech.understanding.idcard import id_problem

from gateway.storage.database import policies, utcnow

REQUIRED = ("policy_number", "insured_name", "insured_id_number")
BATCH = 1000
CONSENT_FIELDS = tuple(f for f in OPTIONAL_CSV_FIELDS if f.startswith("consent_"))
# Surveys (0006): 回执日期, from which the cooling-off period counts, and the policyholder's ID number
# when it is not the insured's. Optional like the columns above: an import without them keeps what is stored.
SURVEY_FIELDS = ("receipt_date", "holder_id_number")
OPTIONAL_FIELDS = (*OPTIONAL_CSV_FIELDS, *SURVEY_FIELDS)
_YES = {"1", "true", "yes", "y", "是", "同意"}
_NO = {"0", "false", "no", "n", "否", "拒绝"}


@dataclass
class ImportResult:
    imported: int
    errors: list[dict[str, Any]]  # {"row": n, "error": "..."}; rows with errors are not imported


class PolicyImportError(ValueError):
    pass


def parse_csv(text: str, today: date) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of a policy CSV (header line required) as dicts, plus per-row errors."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if not reader.fieldnames:
        raise PolicyImportError("the CSV is empty")
    missing = [f for f in REQUIRED if f not in reader.fieldnames]
    if missing:
        raise PolicyImportError(f"the CSV header lacks {', '.join(missing)}; expected columns: {', '.join(CSV_FIELDS)}")
    return validate_rows(list(reader), today, first_row=2)


def validate_rows(rows: Iterable[Any], today: date, first_row: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    good, errors = [], []
    for n, raw in enumerate(rows, start=first_row):
        if not isinstance(raw, dict):
            errors.append({"row": n, "error": "not an object"})
            continue
        row = {k: (str(raw.get(k) or "").strip()) for k in CSV_FIELDS}
        # Optional columns only when the import has them: an import without them keeps what is stored.
        row.update({k: _optional_text(raw.get(k)) for k in OPTIONAL_FIELDS if k in raw})
        problem = _row_problem(row, today)
        if problem:
            errors.append({"row": n, "error": problem})
            continue
        row["insured_id_number"] = row["insured_id_number"].upper()
        if "holder_id_number" in row:
            row["holder_id_number"] = row["holder_id_number"].upper()
        good.append(row)
    return good, errors


def _row_problem(row: dict[str, str], today: date) -> str | None:
    for name in REQUIRED:
        if not row[name]:
            return f"{name} is empty"
    problem = id_problem(row["insured_id_number"].upper(), today)
    if problem:
        return f"insured_id_number is not a valid ID number ({problem})"
    for name in CONSENT_FIELDS:
        if name in row and row[name].lower() not in _YES | _NO | {""}:
            return f"{name} {row[name]!r} is not yes or no (1/0, true/false, 是/否; empty: not stated)"
    holder = row.get("holder_id_number", "").upper()
    if holder and (problem := id_problem(holder, today)):
        return f"holder_id_number is not a valid ID number ({problem})"
    for name in ("start_date", "expiry_date", "receipt_date"):
        if row.get(name):
            try:
                date.fromisoformat(row[name])
            except ValueError:
                return f"{name} {row[name]!r} is not a date (YYYY-MM-DD)"
    return None


def _optional_text(value: Any) -> str:
    if isinstance(value, bool):  # JSON true/false for a consent
        return "1" if value else "0"
    return str(value if value is not None else "").strip()


def _consent(value: str) -> bool | None:
    return None if not value else value.lower() in _YES


def _db_row(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        **row,
        "start_date": date.fromisoformat(row["start_date"]) if row["start_date"] else None,
        "expiry_date": date.fromisoformat(row["expiry_date"]) if row["expiry_date"] else None,
        "updated_at": utcnow(),
    }
    for name in CONSENT_FIELDS:
        if name in out:
            out[name] = _consent(out[name])
    if "wechat_openid" in out:
        out["wechat_openid"] = out["wechat_openid"] or None
    if "receipt_date" in out:
        out["receipt_date"] = date.fromisoformat(out["receipt_date"]) if out["receipt_date"] else None
    if "holder_id_number" in out:
        out["holder_id_number"] = out["holder_id_number"] or None
    return out


async def upsert(engine: AsyncEngine, rows: list[dict[str, str]]) -> int:
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    async with engine.begin() as conn:
        for start in range(0, len(rows), BATCH):
            batch = [_db_row(r) for r in rows[start : start + BATCH]]
            # Last row wins within one import when a policy number repeats.
            batch = list({r["policy_number"]: r for r in batch}.values())
            # One statement per set of optional columns present (rows of a CSV share one).
            shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for r in batch:
                shapes.setdefault(tuple(k for k in OPTIONAL_FIELDS if k in r), []).append(r)
            for optional, group in shapes.items():
                stmt = insert(policies).values(group)
                updated = {c: stmt.excluded[c] for c in (*CSV_FIELDS[1:], *optional, "updated_at")}
                await conn.execute(stmt.on_conflict_do_update(index_elements=["policy_number"], set_=updated))
    return len(rows)


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(policies))).scalar_one())


async def load_index(engine: AsyncEngine) -> RecordIndex:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(policies))).mappings().all()
    return RecordIndex(
        PolicyRecord(
            policy_number=r["policy_number"],
            product=r["product"] or "",
            holder_name=r["holder_name"] or "",
            insured_name=r["insured_name"],
            insured_id_number=r["insured_id_number"],
            phone=r["phone"] or "",
            start_date=r["start_date"],
            expiry_date=r["expiry_date"],
        )
        for r in rows
    )


async def delete_all(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(policies))
