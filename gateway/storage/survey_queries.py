"""Reading survey cases: one case, a filtered page of them, the figures of a survey, a case's
audit events and whether their hash chain holds."""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from surveys import audit

from gateway.storage.database import survey_events, survey_invitations
from gateway.storage.survey_common import aware, row_dict, utc


async def get(engine: AsyncEngine, invitation_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(survey_invitations).where(survey_invitations.c.id == invitation_id))).first()
    return row_dict(row) if row else None


def _filters(survey: str | None = None, status: str | None = None, outcome: str | None = None,
             problem: bool | None = None, since: datetime | None = None, until: datetime | None = None,
             policy_number: str | None = None, flagged: bool | None = None) -> list[Any]:
    c = survey_invitations.c
    where: list[Any] = []
    if survey:
        where.append(c.survey == survey)
    if status:
        where.append(c.status == status)
    if outcome:
        where.append(c.outcome == outcome)
    if problem is not None:
        where.append(c.problem.is_(problem))
    if since is not None:
        where.append(c.created_at >= utc(since))
    if until is not None:
        where.append(c.created_at < utc(until))
    if policy_number:
        where.append(c.policy_number == policy_number)
    return where


async def query(engine: AsyncEngine, *, survey: str | None = None, status: str | None = None,
                outcome: str | None = None, problem: bool | None = None, since: datetime | None = None,
                until: datetime | None = None, policy_number: str | None = None, limit: int = 50,
                offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, one page newest first); since/until bound the creation time."""
    where = _filters(survey, status, outcome, problem, since, until, policy_number)
    cond = and_(*where) if where else None
    async with engine.connect() as conn:
        count = select(func.count()).select_from(survey_invitations)
        rows = select(survey_invitations).order_by(survey_invitations.c.created_at.desc(), survey_invitations.c.id)
        if cond is not None:
            count, rows = count.where(cond), rows.where(cond)
        total = int((await conn.execute(count)).scalar_one())
        found = (await conn.execute(rows.limit(limit).offset(offset))).all()
    return total, [row_dict(r) for r in found]


async def figures(engine: AsyncEngine, survey: str, since: datetime | None = None,
                  until: datetime | None = None) -> dict[str, Any]:
    """Invited, opened, verified, completed (and how: success / problem), expired, revoked, the
    problem rate (of completed), the median completion time (identity passed -> completed, s),
    completed inside the cooling-off period, flagged; of the cases created in [since, until)."""
    c = survey_invitations.c
    where = and_(*_filters(survey, since=since, until=until))
    async with engine.connect() as conn:
        rows = (await conn.execute(select(c.status, c.outcome, c.opened_at, c.verified_at, c.completed_at,
                                          c.deadline, c.seconds, c.flags).where(where))).all()
    completed = [r for r in rows if r.status == "completed"]
    problems = sum(1 for r in completed if r.outcome == "problem")
    seconds = [r.seconds for r in completed if r.seconds is not None]
    inside = sum(1 for r in completed if aware(r.completed_at) <= aware(r.deadline))
    return {
        "survey": survey, "invited": len(rows), "opened": sum(1 for r in rows if r.opened_at is not None),
        "verified": sum(1 for r in rows if r.verified_at is not None), "completed": len(completed),
        "success": len(completed) - problems, "problem": problems,
        "expired": sum(1 for r in rows if r.status == "expired"),
        "revoked": sum(1 for r in rows if r.status == "revoked"),
        "open": sum(1 for r in rows if r.status in ("issued", "opened", "verified")),
        "problem_rate": round(problems / len(completed), 4) if completed else None,
        "median_completion_s": round(statistics.median(seconds), 1) if seconds else None,
        "completed_in_cooling_off": inside,
        "completed_in_cooling_off_rate": round(inside / len(rows), 4) if rows else None,
        "flagged": sum(1 for r in rows if r.flags),
    }


async def events(engine: AsyncEngine, invitation_id: str) -> list[dict[str, Any]]:
    """The case's audit events in order (seq)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(survey_events).where(survey_events.c.invitation_id == invitation_id)
                                   .order_by(survey_events.c.seq))).all()
    return [row_dict(r) for r in rows]


def verify_chain(rows: Sequence[dict[str, Any]]) -> int | None:
    """Index of the first event whose hash or link does not hold (None: the chain is intact)."""
    return audit.verify([{**r, "at": aware(r["at"])} for r in rows])
