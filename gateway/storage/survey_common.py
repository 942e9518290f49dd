"""What the survey storage modules share: the write transaction, the locked invitation row, the
audit chain's append, datetimes in UTC, and the errors callers tell apart.

Every change to an invitation runs in one write transaction that first locks the invitation's
row (PostgreSQL: SELECT ... FOR UPDATE; SQLite: BEGIN IMMEDIATE holds the database's write lock),
so two requests on the same invitation (a double tap, two tabs, the web and a voice call) are
serialized; the audit event of the change is appended in that same transaction.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Mapping

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from surveys import audit

from gateway.storage.database import survey_events, survey_invitations

OPEN = ("issued", "opened", "verified")  # statuses in which a case may still be answered
CLOSED = ("completed", "expired", "revoked")
CHANNELS = ("sms", "wechat", "voice")
USER_AGENT_MAX = 512


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


@contextlib.asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """PostgreSQL: an ordinary transaction (rows are locked FOR UPDATE). SQLite: the write lock from
    the start (BEGIN IMMEDIATE), so a second writer waits (busy timeout) instead of failing when it
    upgrades a read."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    async with engine.connect() as conn:
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
    query = select(survey_invitations).where(survey_invitations.c.id == invitation_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return row_dict(row) if row else None


async def append_event(conn: AsyncConnection, invitation_id: str, kind: str, data: Mapping[str, Any], *,
                       now: datetime, client_ip: str | None = None, user_agent: str | None = None) -> str:
    """Append one audit event in the caller's transaction (which holds the invitation's lock:
    `lock_invitation`, or a write transaction on SQLite); its hash.

    The client's address and user agent, when given, are part of the hashed data as well as
    columns, so the chain covers them too."""
    user_agent = user_agent[:USER_AGENT_MAX] if user_agent else user_agent
    body = dict(data)
    if client_ip is not None:
        body["client_ip"] = client_ip
    if user_agent is not None:
        body["user_agent"] = user_agent
    last = (await conn.execute(
        select(survey_events.c.seq, survey_events.c.hash).where(survey_events.c.invitation_id == invitation_id)
        .order_by(survey_events.c.seq.desc()).limit(1))).first()
    seq, prev = (last.seq + 1, last.hash) if last else (0, audit.GENESIS)
    at = utc(now)
    digest = audit.event_hash(prev, kind, at, body)
    # UNIQUE (invitation_id, seq): a writer that did not hold the lock fails here instead of forking the chain.
    await conn.execute(survey_events.insert().values(
        invitation_id=invitation_id, seq=seq, kind=kind, at=at, data=body, client_ip=client_ip,
        user_agent=user_agent, prev_hash=prev, hash=digest))
    return digest
