"""Answers and outcomes of survey cases: pages recorded once, completion (outcome, problems, signals,
outbox rows) once, contact requests, voice answers, expiry and revocation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from surveys import answers as survey_answers
from surveys import signals
from surveys.definition import Survey

from gateway.storage import outbox
from gateway.storage.database import survey_invitations, survey_sessions, survey_submissions
from gateway.storage.survey_common import (
    CLOSED, DEFAULT_ZONE, OPEN, TOPIC_FOLLOWUP, TOPIC_PROBLEM, TOPIC_RESULT, Incomplete, InvitationClosed,
    NotVerified, append_event, aware, close_case, expire_if_due, follow_up_due, iso, lock_invitation,
    pop_tail, result_payload, row_dict, session_of, tail_columns, tail_in_lock, utc, write_transaction,
)
from gateway.storage.survey_queries import get

# Answers ---------------------------------------------------------------------

_SESSION_COLUMNS = ("verified_at", "expires_at", "client_ip", "user_agent")


def _lock_with_session_query(dialect: str) -> Any:
    joined = survey_invitations.outerjoin(survey_sessions, and_(
        survey_sessions.c.id == bindparam("session_id"), survey_sessions.c.invitation_id == survey_invitations.c.id))
    query = select(survey_invitations, survey_sessions.c.id.label("session_id"),
                   *(survey_sessions.c[c].label(f"session_{c}") for c in _SESSION_COLUMNS),
                   *(tail_columns() if dialect == "sqlite" else ())
                   ).select_from(joined).where(survey_invitations.c.id == bindparam("invitation_id"))
    if dialect == "postgresql":
        query = query.with_for_update(of=survey_invitations)
    return query


def _lock_for_event_query(dialect: str) -> Any:
    query = select(survey_invitations.c.id, *(tail_columns() if dialect == "sqlite" else ())).where(
        survey_invitations.c.id == bindparam("invitation_id"))
    return query if dialect == "sqlite" else query.with_for_update()


def _claim_submission_query(dialect: str) -> Any:
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(survey_submissions).on_conflict_do_nothing(index_elements=["invitation_id", "submission_key"])


def _store_answers_query(dialect: str) -> Any:
    # The SET clause comes from the parameters (answers, updated_at); b_id: a column's name is not allowed.
    return update(survey_invitations).where(survey_invitations.c.id == bindparam("b_id"))


# The hot path's statements, built once per dialect (tail_in_lock: the chain's tail in the lock on SQLite).
_QUERIES: dict[tuple[str, str], Any] = {}


def _query(conn: AsyncConnection, name: str) -> Any:
    key = (name, conn.dialect.name)
    if key not in _QUERIES:
        build = {"lock_with_session": _lock_with_session_query, "lock_for_event": _lock_for_event_query,
                 "claim_submission": _claim_submission_query, "store_answers": _store_answers_query}[name]
        _QUERIES[key] = build(conn.dialect.name)
    return _QUERIES[key]


async def _lock_with_session(conn: AsyncConnection, invitation_id: str, session_id: str | None
                             ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The invitation's row, locked, and the session if it is one of this invitation's."""
    row = (await conn.execute(_query(conn, "lock_with_session"),
                              {"invitation_id": invitation_id, "session_id": session_id or ""})).first()
    if row is None:
        raise LookupError(f"no invitation {invitation_id}")
    inv = row_dict(row)
    session = {c: inv.pop(f"session_{c}") for c in _SESSION_COLUMNS}
    found = inv.pop("session_id")
    return inv, (session if found is not None else None)


async def _closed(conn: AsyncConnection, inv: dict[str, Any], now: datetime) -> str | None:
    """Why a locked case takes no more answers: "expired" (its deadline passed, expired now),
    its closed status, or None (open)."""
    if await expire_if_due(conn, inv, now):
        return "expired"
    return inv["status"] if inv["status"] in CLOSED else None


async def save_page(engine: AsyncEngine, invitation_id: str, session_id: str, *, page: str,
                    answers: Mapping[str, Any], submission_key: str, now: datetime) -> bool:
    """Record one page's answers (already read and checked by surveys.answers.read_page); False
    when this submission key was recorded before (a double tap or retry: nothing is written).
    The session must have passed the identity check; a closed case raises InvitationClosed."""
    now = utc(now)
    if not submission_key or len(submission_key) > 64:
        raise ValueError("submission_key must be 1 to 64 characters")
    async with write_transaction(engine) as conn:
        # The hot path of the pages (one post per page): the row lock and the session in one read,
        # the submission key claimed by its insert (a repeat inserts nothing: False).
        inv, session = await _lock_with_session(conn, invitation_id, session_id)
        tail = pop_tail(inv) if tail_in_lock(conn) else None  # good until the first event appended here
        result = await conn.execute(_query(conn, "claim_submission"), {
            "invitation_id": invitation_id, "page": page, "submission_key": submission_key, "at": now})
        if (result.rowcount or 0) != 1:
            return False  # before the status: a re-post after the last page is a no-op, not an error
        closed = await _closed(conn, inv, now)
        if closed is not None:
            # Nothing of this post stays (the expiry, if it happened now, does).
            await conn.execute(survey_submissions.delete().where(
                survey_submissions.c.invitation_id == invitation_id,
                survey_submissions.c.submission_key == submission_key))
        else:
            if session is None:
                raise NotVerified(f"session {session_id} is not a session of invitation {invitation_id}")
            if session["verified_at"] is None or session["expires_at"] <= now:
                raise NotVerified(f"session {session_id} has not passed the identity check or has expired")
            merged = {**(inv["answers"] or {}), **dict(answers)}
            await conn.execute(_query(conn, "store_answers"), {"b_id": invitation_id, "answers": merged,
                                                                 "updated_at": now})
            await append_event(conn, invitation_id, "answers", {"page": page, "answers": dict(answers),
                                                                "submission_key": submission_key},
                               now=now, client_ip=session["client_ip"], user_agent=session["user_agent"], tail=tail)
    if closed:
        raise InvitationClosed(invitation_id, closed)
    return True


async def add_event(engine: AsyncEngine, invitation_id: str, kind: str, data: Mapping[str, Any], *, now: datetime,
                    client_ip: str | None = None, user_agent: str | None = None) -> str:
    """append_event in a transaction of its own (e.g. `page_shown` with the served page's sha256)."""
    async with write_transaction(engine) as conn:
        # Only the row's lock is needed here (and, on SQLite, the chain's tail in the same read).
        in_lock = tail_in_lock(conn)
        row = (await conn.execute(_query(conn, "lock_for_event"), {"invitation_id": invitation_id})).first()
        if row is None:
            raise LookupError(f"no invitation {invitation_id}")
        return await append_event(conn, invitation_id, kind, data, now=utc(now), client_ip=client_ip,
                                  user_agent=user_agent, tail=pop_tail(dict(row._mapping)) if in_lock else None)


# Completion --------------------------------------------------------------------

def _result(inv: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": inv["id"], "status": inv["status"], "outcome": inv["outcome"], "problem": bool(inv["problem"]),
            "problems": list(inv["problems"] or []), "flags": list(inv["flags"] or []), "seconds": inv["seconds"],
            "source": inv["source"], "completed_at": iso(aware(inv["completed_at"]))}


async def _shared_counts(conn: AsyncConnection, invitation_id: str) -> tuple[int, int]:
    """Policyholders seen on this case's devices (address + user agent) and addresses
    (surveys.signals.address_key: an IPv4 address, an IPv6 /64): the most distinct holders any one
    of them passed the identity check for, this case's included."""
    mine = (await conn.execute(select(survey_sessions.c.address_key, survey_sessions.c.user_agent).where(
        survey_sessions.c.invitation_id == invitation_id, survey_sessions.c.verified_at.is_not(None),
        survey_sessions.c.address_key.is_not(None)).distinct())).all()
    device = address = 0
    holders = func.count(survey_invitations.c.holder_key.distinct())
    base = select(holders).select_from(survey_sessions.join(
        survey_invitations, survey_invitations.c.id == survey_sessions.c.invitation_id)).where(
        survey_sessions.c.verified_at.is_not(None))
    for where, agent in mine:
        address = max(address, int((await conn.execute(
            base.where(survey_sessions.c.address_key == where))).scalar_one()))
        same_agent = survey_sessions.c.user_agent.is_(None) if agent is None else survey_sessions.c.user_agent == agent
        device = max(device, int((await conn.execute(
            base.where(survey_sessions.c.address_key == where, same_agent))).scalar_one()))
    return device, address


async def _complete(conn: AsyncConnection, inv: dict[str, Any], survey: Survey, now: datetime, source: str,
                    seconds: float | None, min_seconds_per_question: float, shared_limit: int,
                    zone: ZoneInfo) -> dict[str, Any]:
    answers, context = dict(inv["answers"] or {}), dict(inv["context"] or {})
    if not survey_answers.is_complete(survey, answers, context):
        raise Incomplete(f"invitation {inv['id']}: not every required question is answered")
    outcome = survey_answers.outcome(survey, answers, context)
    problems = [p.as_dict() for p in survey_answers.problems(survey, answers, context)]
    if seconds is None and inv["verified_at"] is not None:
        seconds = (now - aware(inv["verified_at"])).total_seconds()
    shown = sum(len(survey.visible_questions(page, answers, context))
                for page in survey.visible_pages(answers, context))
    flags: list[str] = []
    if seconds is not None and signals.too_fast(seconds, shown, min_seconds_per_question):
        flags.append("too_fast")
    device, address = await _shared_counts(conn, inv["id"])
    if signals.shared(device, shared_limit):
        flags.append("shared_device")
    if signals.shared(address, shared_limit):
        flags.append("shared_address")
    values = {"status": "completed", "outcome": outcome, "problem": outcome == "problem", "problems": problems,
              "flags": flags, "completed_at": now, "seconds": seconds, "source": source, "updated_at": now}
    await conn.execute(update(survey_invitations).where(survey_invitations.c.id == inv["id"]).values(**values))
    inv = {**inv, **values}
    await append_event(conn, inv["id"], "completed", {
        "outcome": outcome, "problems": problems, "seconds": seconds, "source": source,
        "survey_version": survey.version, "survey_hash": survey.hash}, now=now)
    if flags:
        await append_event(conn, inv["id"], "flagged", {"flags": flags, "device_holders": device,
                                                        "address_holders": address}, now=now)
    await outbox.enqueue(conn, topic=TOPIC_RESULT, aggregate_id=inv["id"], payload=result_payload(inv))
    if outcome == "problem":
        await outbox.enqueue(conn, topic=TOPIC_PROBLEM, aggregate_id=inv["id"], payload={
            "event": TOPIC_PROBLEM, "invitation_id": inv["id"], "policy_number": inv["policy_number"], "survey": inv["survey"],
            "phone": inv["phone"], "problems": problems, "flags": flags,
            "due_at": iso(follow_up_due(now, aware(inv["deadline"]), zone)), "deadline": iso(aware(inv["deadline"])),
            "task": "问题件回访"})
    return _result(inv)


async def complete(engine: AsyncEngine, invitation_id: str, survey: Survey, *, now: datetime, source: str = "web",
                   min_seconds_per_question: float = 2.0, shared_limit: int = 3,
                   zone: ZoneInfo = DEFAULT_ZONE) -> dict[str, Any]:
    """Close a verified case whose every visible required question is answered: outcome, problems
    and flags stored, status completed, `survey_result` (and `survey_problem`) queued. A second
    call returns the first's result and changes nothing. Past the deadline the case is expired
    instead and InvitationClosed("expired") raised; Incomplete when answers are missing."""
    now = utc(now)
    async with write_transaction(engine) as conn:
        inv = await lock_invitation(conn, invitation_id)
        if inv is None:
            raise LookupError(f"no invitation {invitation_id}")
        if inv["status"] == "completed":
            return _result(inv)
        closed = await _closed(conn, inv, now)
        if closed is None:
            if inv["status"] != "verified":
                raise NotVerified(f"invitation {invitation_id} has not passed the identity check")
            result = await _complete(conn, inv, survey, now, source, None, min_seconds_per_question, shared_limit,
                                     zone)
    if closed:
        raise InvitationClosed(invitation_id, closed)
    if "shared_device" in result["flags"] or "shared_address" in result["flags"]:
        await _flag_peers(engine, invitation_id, now)
    return result


async def _flag_peers(engine: AsyncEngine, invitation_id: str, now: datetime) -> int:
    """The shared-device signal on the cases completed earlier on the same device or address too,
    each in its own transaction (one row lock at a time: no deadlock with concurrent completions)."""
    async with engine.connect() as conn:
        mine = (await conn.execute(select(survey_sessions.c.address_key, survey_sessions.c.user_agent).where(
            survey_sessions.c.invitation_id == invitation_id, survey_sessions.c.verified_at.is_not(None),
            survey_sessions.c.address_key.is_not(None)).distinct())).all()
        peers: dict[str, set[str]] = {}
        for where, agent in mine:
            rows = (await conn.execute(select(survey_sessions.c.invitation_id, survey_sessions.c.user_agent).where(
                survey_sessions.c.address_key == where, survey_sessions.c.verified_at.is_not(None),
                survey_sessions.c.invitation_id != invitation_id))).all()
            for peer, peer_agent in rows:
                peers.setdefault(peer, set()).add("shared_address")
                if peer_agent == agent:
                    peers[peer].add("shared_device")
    own = set((await get(engine, invitation_id) or {}).get("flags") or [])
    flagged = 0
    for peer, kinds in sorted(peers.items()):
        kinds &= own  # only the signals this completion found shared
        if not kinds:
            continue
        async with write_transaction(engine) as conn:
            inv = await lock_invitation(conn, peer)
            if inv is None or inv["status"] != "completed":
                continue
            new = sorted(kinds - set(inv["flags"] or []))
            if not new:
                continue
            flags = list(inv["flags"] or []) + new
            await conn.execute(update(survey_invitations).where(survey_invitations.c.id == peer)
                               .values(flags=flags, updated_at=now))
            await append_event(conn, peer, "flagged", {"flags": new, "with": invitation_id}, now=now)
            flagged += 1
    return flagged


async def expire_due(engine: AsyncEngine, now: datetime, limit: int = 500) -> int:
    """Open cases past their deadline: expired, outcome outside_cooling_off, result queued; how many."""
    now = utc(now)
    async with engine.connect() as conn:
        ids = (await conn.execute(select(survey_invitations.c.id).where(
            survey_invitations.c.status.in_(OPEN), survey_invitations.c.deadline < now)
            .order_by(survey_invitations.c.deadline).limit(limit))).scalars().all()
    expired = 0
    for invitation_id in ids:
        async with write_transaction(engine) as conn:
            inv = await lock_invitation(conn, invitation_id)
            if inv is not None and await expire_if_due(conn, inv, now):
                expired += 1
    return expired


async def revoke(engine: AsyncEngine, invitation_id: str, now: datetime, reason: str = "") -> dict[str, Any]:
    """Close an open case (e.g. the policy was cancelled in its cooling-off period): revoked,
    outcome not_completed, result queued; its link stops working. Revoking a revoked or expired
    case changes nothing; a completed one raises InvitationClosed."""
    now = utc(now)
    async with write_transaction(engine) as conn:
        inv = await lock_invitation(conn, invitation_id)
        if inv is None:
            raise LookupError(f"no invitation {invitation_id}")
        if inv["status"] == "completed":
            raise InvitationClosed(invitation_id, "completed")
        if inv["status"] in OPEN:
            await close_case(conn, inv, "revoked", "not_completed", now, reason or "revoked")
    row = await get(engine, invitation_id)
    assert row is not None
    return row


# Contact requests and voice -------------------------------------------------------

async def request_contact(engine: AsyncEngine, invitation_id: str, *, now: datetime, page: str | None = None,
                          note: str = "", client_ip: str | None = None, user_agent: str | None = None,
                          zone: ZoneInfo = DEFAULT_ZONE) -> bool:
    """"我有疑问 / 请电话联系我": a `survey_followup` task (once per invitation: False the second time).
    Allowed on any case but a revoked one."""
    now = utc(now)
    async with write_transaction(engine) as conn:
        inv = await lock_invitation(conn, invitation_id)
        if inv is None:
            raise LookupError(f"no invitation {invitation_id}")
        if inv["status"] == "revoked":
            raise InvitationClosed(invitation_id, "revoked")
        if inv["contact_requested_at"] is not None:
            return False
        note = (note or "").strip()[:500]
        await conn.execute(update(survey_invitations).where(survey_invitations.c.id == invitation_id)
                           .values(contact_requested_at=now, updated_at=now))
        await append_event(conn, invitation_id, "contact_requested", {"page": page, "note": note}, now=now,
                           client_ip=client_ip, user_agent=user_agent)
        deadline = aware(inv["deadline"])
        await outbox.enqueue(conn, topic=TOPIC_FOLLOWUP, aggregate_id=invitation_id, payload={
            "event": TOPIC_FOLLOWUP, "invitation_id": invitation_id, "policy_number": inv["policy_number"], "survey": inv["survey"],
            "phone": inv["phone"], "page": page, "note": note, "requested_at": iso(now),
            "due_at": iso(follow_up_due(now, deadline, zone)), "deadline": iso(deadline), "task": "客户要求电话回访"})
    return True


async def record_voice_answers(engine: AsyncEngine, invitation_id: str, survey: Survey, *,
                               answers: Mapping[str, Any], identity_passed: bool, result_id: str, now: datetime,
                               seconds: float | None = None, min_seconds_per_question: float = 2.0,
                               shared_limit: int = 3, zone: ZoneInfo = DEFAULT_ZONE) -> dict[str, Any]:
    """A voice call's answers (the flow result `result_id`), stored where the pages store theirs,
    then completed (source voice) when every required question is answered. Without the identity
    check passed only the call is recorded. A case completed already is returned unchanged.
    Answer: complete()'s result, or `{"id", "status", "completed": False}`."""
    now = utc(now)
    async with write_transaction(engine) as conn:
        inv = await lock_invitation(conn, invitation_id)
        if inv is None:
            raise LookupError(f"no invitation {invitation_id}")
        if inv["status"] == "completed":
            return _result(inv)
        closed = await _closed(conn, inv, now)
        if closed is None:
            await append_event(conn, invitation_id, "voice_call", {"result_id": result_id,
                                                                   "identity_passed": identity_passed}, now=now)
            if not identity_passed:
                await append_event(conn, invitation_id, "identity_failed", {"reason": "voice",
                                                                            "result_id": result_id}, now=now)
                return {"id": invitation_id, "status": inv["status"], "completed": False}
            values: dict[str, Any] = {"updated_at": now, "answers": {**(inv["answers"] or {}), **dict(answers)}}
            if inv["status"] in ("issued", "opened"):
                values.update(status="verified", verified_at=now)
                await append_event(conn, invitation_id, "identity_passed", {"source": "voice",
                                                                            "result_id": result_id}, now=now)
            await conn.execute(update(survey_invitations).where(survey_invitations.c.id == invitation_id)
                               .values(**values))
            inv.update(values)
            await append_event(conn, invitation_id, "voice_answers", {"result_id": result_id,
                                                                      "answers": dict(answers)}, now=now)
            if not survey_answers.is_complete(survey, inv["answers"], inv["context"] or {}):
                return {"id": invitation_id, "status": inv["status"], "completed": False}
            return await _complete(conn, inv, survey, now, "voice", seconds, min_seconds_per_question,
                                   shared_limit, zone)
    raise InvitationClosed(invitation_id, closed)
