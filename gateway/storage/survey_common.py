"""What the survey storage modules share: the write transaction, the locked invitation row, the
audit chain's append, datetimes in UTC, and the errors callers tell apart.

Every change to an invitation runs in one write transaction that first locks the invitation's
row (PostgreSQL: SELECT ... FOR UPDATE; SQLite: BEGIN IMMEDIATE holds the database's write lock),
so two requests on the same invitation (a double tap, two tabs, the web and a voice call) are
serialized; the audit event of the change is appended in that same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Mapping
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from surveys import audit

from gateway.storage import outbox
from gateway.storage.database import survey_events, survey_invitations, survey_sessions

OPEN = ("issued", "opened", "verified")  # statuses in which a case may still be answered
CLOSED = ("completed", "expired", "revoked")
CHANNELS = ("sms", "wechat", "voice")
USER_AGENT_MAX = 512
TOPIC_RESULT = "survey_result"
TOPIC_PROBLEM = "survey_problem"
TOPIC_FOLLOWUP = "survey_followup"
DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")
MAX_BATCH = 1000
FOLLOW_UP_MARGIN = timedelta(days=2)  # a follow-up task is due at least this long before the deadline


class InvitationClosed(ValueError):
    """The invitation is completed, expired or revoked: nothing more may be answered on it."""

    def __init__(self, invitation_id: str, status: str) -> None:
        super().__init__(f"invitation {invitation_id} is {status}")
        self.invitation_id = invitation_id
        self.status = status


class NotVerified(PermissionError):
    """The session has not passed the identity check (or belongs to another invitation)."""


class Incomplete(ValueError):
    """complete() before every visible required question is answered."""


# SQLite: one writer at a time inside this process, queued here rather than in SQLite's busy handler
# (which sleeps in growing steps: under many concurrent page posts it wastes most of the time).
_sqlite_writers: "weakref.WeakKeyDictionary[Any, asyncio.Lock]" = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """PostgreSQL: an ordinary transaction (rows are locked FOR UPDATE). SQLite: the write lock from
    the start (BEGIN IMMEDIATE), so a second writer waits instead of failing when it upgrades a
    read; writers of this process queue on an asyncio lock first (other processes: busy timeout)."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    lock = _sqlite_writers.setdefault(engine.sync_engine, asyncio.Lock())
    async with lock, engine.connect() as conn:
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()


def insert_for(conn: AsyncConnection):
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive (they are stored in UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("an aware datetime is needed")
    return value.astimezone(timezone.utc)


def row_dict(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = aware(value)
    return out


async def lock_invitation(conn: AsyncConnection, invitation_id: str) -> dict[str, Any] | None:
    """The invitation's row, locked for this transaction (None: no such invitation)."""
    query = _LOCK_PG if conn.dialect.name == "postgresql" else _LOCK
    row = (await conn.execute(query, {"invitation_id": invitation_id})).first()
    return row_dict(row) if row else None


# Built once (every change of a case starts here): only the parameter changes.
_LOCK = select(survey_invitations).where(survey_invitations.c.id == bindparam("invitation_id"))
_LOCK_PG = _LOCK.with_for_update()


def tail_in_lock(conn: AsyncConnection) -> bool:
    """Whether the chain's tail may be read in the same statement as the invitation's row lock.
    SQLite: yes, the write transaction holds the database's write lock from BEGIN IMMEDIATE on.
    PostgreSQL: no; a SELECT ... FOR UPDATE that waited for the lock sees the row's new version
    but its subqueries keep the statement's older snapshot (a stale tail), so it is read after."""
    return conn.dialect.name == "sqlite"


def tail_columns() -> list[Any]:
    """The last event's seq and hash of the invitation row being selected, as columns
    `chain_seq`, `chain_hash` (NULL without events): see `tail_in_lock` for when to use them."""
    last = (select(survey_events.c.seq).where(survey_events.c.invitation_id == survey_invitations.c.id)
            .order_by(survey_events.c.seq.desc()).limit(1))
    return [last.scalar_subquery().label("chain_seq"),
            last.with_only_columns(survey_events.c.hash).scalar_subquery().label("chain_hash")]


def pop_tail(row: dict[str, Any]) -> tuple[int, str] | None:
    """append_event's `tail` from a row selected with `tail_columns` (removed from the row)."""
    seq, digest = row.pop("chain_seq"), row.pop("chain_hash")
    return (-1, audit.GENESIS) if seq is None else (int(seq), digest)


async def append_event(conn: AsyncConnection, invitation_id: str, kind: str, data: Mapping[str, Any], *,
                       now: datetime, client_ip: str | None = None, user_agent: str | None = None,
                       tail: tuple[int, str] | None = None) -> str:
    """Append one audit event in the caller's transaction (which holds the invitation's lock:
    `lock_invitation`, or a write transaction on SQLite); its hash.

    The client's address and user agent, when given, are part of the hashed data as well as
    columns, so the chain covers them too. `tail`: the last event's (seq, hash), read under the
    lock in this transaction with nothing appended since (`tail_columns`); else it is read here."""
    user_agent = user_agent[:USER_AGENT_MAX] if user_agent else user_agent
    body = dict(data)
    if client_ip is not None:
        body["client_ip"] = client_ip
    if user_agent is not None:
        body["user_agent"] = user_agent
    if tail is None:
        last = (await conn.execute(_TAIL, {"invitation_id": invitation_id})).first()
        tail = (last.seq, last.hash) if last else (-1, audit.GENESIS)
    seq, prev = tail[0] + 1, tail[1]
    at = utc(now)
    digest = audit.event_hash(prev, kind, at, body)
    # UNIQUE (invitation_id, seq): a writer that did not hold the lock fails here instead of forking the chain.
    await conn.execute(_EVENT_INSERT, {
        "invitation_id": invitation_id, "seq": seq, "kind": kind, "at": at, "data": body, "client_ip": client_ip,
        "user_agent": user_agent, "prev_hash": prev, "hash": digest})
    return digest


# Built once: every write of a page appends an event (only the parameters change).
_TAIL = (select(survey_events.c.seq, survey_events.c.hash)
         .where(survey_events.c.invitation_id == bindparam("invitation_id"))
         .order_by(survey_events.c.seq.desc()).limit(1))
_EVENT_INSERT = survey_events.insert()


def new_id() -> str:
    return uuid.uuid4().hex


def iso(value: datetime | None) -> str | None:
    return utc(value).isoformat() if value is not None else None


def holder_id(policy: Mapping[str, Any]) -> str:
    """The policyholder's ID number: holder_id_number when imported, else the insured's (the same person)."""
    return str(policy.get("holder_id_number") or policy.get("insured_id_number") or "").upper()


def follow_up_due(now: datetime, deadline: datetime, zone: ZoneInfo = DEFAULT_ZONE) -> datetime:
    """When a problem case's (or a call request's) follow-up task is due: the earlier of two days
    before the deadline and one working day from now (the next Monday-to-Friday day, same local
    time; public holidays are not known here), never before now."""
    local = now.astimezone(zone)
    day = local.date() + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    next_working = datetime.combine(day, local.time(), zone)
    return utc(max(min(next_working, deadline - FOLLOW_UP_MARGIN), now))




def result_payload(inv: Mapping[str, Any]) -> dict[str, Any]:
    """The `survey_result` delivery: the case as the insurer's system needs it."""
    deadline, completed = aware(inv["deadline"]), aware(inv["completed_at"])
    return {
        "event": TOPIC_RESULT, "invitation_id": inv["id"], "survey": inv["survey"],
        "survey_version": inv["survey_version"],
        "survey_hash": inv["survey_hash"], "policy_number": inv["policy_number"], "status": inv["status"],
        "outcome": inv["outcome"], "problem": bool(inv["problem"]), "problems": list(inv["problems"] or []),
        "answers": dict(inv["answers"] or {}), "flags": list(inv["flags"] or []), "source": inv["source"],
        "seconds": inv["seconds"], "deadline": iso(deadline), "completed_at": iso(completed),
        "closed_at": iso(aware(inv.get("closed_at"))),
        "inside_cooling_off": completed is not None and completed <= deadline,
    }




async def expire_if_due(conn: AsyncConnection, inv: dict[str, Any], now: datetime) -> bool:
    """Past its deadline and still open: expired now (True)."""
    if inv["status"] in OPEN and aware(inv["deadline"]) < now:
        await close_case(conn, inv, "expired", "outside_cooling_off", now, "the cooling-off deadline passed")
        return True
    return False


async def open_invitation(conn: AsyncConnection, invitation_id: str, now: datetime,
                           allow_completed: bool = False) -> tuple[dict[str, Any] | None, str | None]:
    """The locked invitation, or why it cannot be changed (a status: expired/revoked/completed)."""
    inv = await lock_invitation(conn, invitation_id)
    if inv is None:
        raise LookupError(f"no invitation {invitation_id}")
    if await expire_if_due(conn, inv, now):
        return None, "expired"
    if inv["status"] in ("expired", "revoked") or (inv["status"] == "completed" and not allow_completed):
        return None, inv["status"]
    return inv, None




async def session_of(conn: AsyncConnection, invitation_id: str, session_id: str | None) -> dict[str, Any]:
    row = (await conn.execute(_SESSION, {"session_id": session_id})).first() if session_id else None
    if row is None or row.invitation_id != invitation_id:
        raise NotVerified(f"session {session_id} is not a session of invitation {invitation_id}")
    return row_dict(row)




_SESSION = select(survey_sessions).where(survey_sessions.c.id == bindparam("session_id"))


async def close_case(conn: AsyncConnection, inv: dict[str, Any], status: str, outcome: str, now: datetime,
                 reason: str) -> dict[str, Any]:
    values = {"status": status, "outcome": outcome, "closed_at": now, "updated_at": now}
    await conn.execute(update(survey_invitations).where(survey_invitations.c.id == inv["id"]).values(**values))
    inv.update(values)
    await append_event(conn, inv["id"], status, {"outcome": outcome, "reason": reason}, now=now)
    await outbox.enqueue(conn, topic=TOPIC_RESULT, aggregate_id=inv["id"], payload=result_payload(inv))
    return inv
