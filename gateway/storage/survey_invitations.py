"""Survey invitations and their page sessions: made idempotently by policy and survey (the link
recomputed from the stored salt and the link key), found by token, opened, and the browser's
session by its cookie.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from surveys import signals, tokens
from surveys.definition import Survey
from surveys.products import Catalog, deadline as cooling_off_deadline

from gateway.storage.database import policies, survey_invitations, survey_sessions
from gateway.storage.survey_common import (
    CHANNELS, DEFAULT_ZONE, MAX_BATCH, USER_AGENT_MAX, InvitationClosed, append_event, aware, holder_id,
    insert_for, iso, new_id, open_invitation, row_dict, utc, write_transaction,
)

TOUCH_S = 30.0  # a session's last_seen_at is written at most this often (every page view would be a write)


# Invitations ---------------------------------------------------------------

def link(base_url: str, key: bytes, salt_hex: str) -> str:
    """The invitation's link, computed again from its salt and the link key (never stored)."""
    return f"{base_url.rstrip('/')}/s/{tokens.make_token(key, bytes.fromhex(salt_hex))}"


def _item(row: Mapping[str, Any], base_url: str, key: bytes, created: bool) -> dict[str, Any]:
    return {"id": row["id"], "policy_number": row["policy_number"], "channel": row["channel"],
            "url": link(base_url, key, row["token_salt"]), "status": row["status"],
            "deadline": iso(aware(row["deadline"])), "created": created}


async def create_invitations(engine: AsyncEngine, survey: Survey, catalog: Catalog,
                             requests: Sequence[Mapping[str, Any]], *, key: bytes, base_url: str, now: datetime,
                             zone: ZoneInfo = DEFAULT_ZONE) -> list[dict[str, Any]]:
    """One invitation per request `{"policy_number", "channel"}`, in order: `{"id", "policy_number",
    "channel", "url", "status", "deadline", "created"}`, or `{"policy_number", "channel", "error"}`
    for an item that cannot be made (unknown policy, bad channel, no receipt date, the cooling-off
    period over). The same policy and survey again gives the same invitation (and link)."""
    if len(requests) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} invitations per request, got {len(requests)}")
    now = utc(now)
    out: list[dict[str, Any] | None] = [None] * len(requests)
    wanted: list[tuple[int, str, str]] = []
    for i, item in enumerate(requests):
        if not isinstance(item, Mapping):
            out[i] = {"policy_number": None, "channel": None,
                      "error": 'expected an object {"policy_number": ..., "channel": "sms|wechat|voice"}'}
            continue
        number = str(item.get("policy_number") or "").strip()
        channel = str(item.get("channel") or "sms").strip().lower()
        if not number:
            out[i] = {"policy_number": None, "channel": channel, "error": "policy_number is missing"}
        elif channel not in CHANNELS:
            out[i] = {"policy_number": number, "channel": channel,
                      "error": f"channel {channel!r} is not one of {', '.join(CHANNELS)}"}
        else:
            wanted.append((i, number, channel))
    numbers = sorted({n for _, n, _ in wanted})
    if numbers:
        async with write_transaction(engine) as conn:
            found = {r["policy_number"]: dict(r) for r in (await conn.execute(
                select(policies).where(policies.c.policy_number.in_(numbers)))).mappings().all()}
            existing = await _existing(conn, survey.name, numbers)
            created: set[str] = set()
            for i, number, channel in wanted:
                if number in existing or number in created:
                    continue
                policy = found.get(number)
                error = _cannot_invite(number, policy, catalog, now, zone)
                if error:
                    out[i] = {"policy_number": number, "channel": channel, "error": error}
                    continue
                assert policy is not None
                if await _insert_invitation(conn, survey, catalog, policy, channel, key, now, zone):
                    created.add(number)
            rows = await _existing(conn, survey.name, numbers)
        for i, number, _channel in wanted:
            if out[i] is None:
                out[i] = _item(rows[number], base_url, key, number in created)
                created.discard(number)  # a repeat of the policy in the same batch is not "created" again
    return [o for o in out if o is not None]


async def _existing(conn: AsyncConnection, survey: str, numbers: Sequence[str]) -> dict[str, dict[str, Any]]:
    rows = (await conn.execute(select(survey_invitations).where(
        survey_invitations.c.survey == survey, survey_invitations.c.policy_number.in_(list(numbers))))).all()
    return {r.policy_number: row_dict(r) for r in rows}


def _cannot_invite(number: str, policy: Mapping[str, Any] | None, catalog: Catalog, now: datetime,
                   zone: ZoneInfo) -> str | None:
    if policy is None:
        return f"no policy {number} (import it first: POST /api/policies)"
    if policy.get("receipt_date") is None:
        return f"policy {number} has no receipt_date (回执日期): the cooling-off deadline cannot be computed"
    if not holder_id(policy):
        return f"policy {number} has no ID number to verify the policyholder with"
    if not policy.get("phone"):
        return f"policy {number} has no phone number (the one-time code goes there)"
    product = catalog.for_policy(policy)
    end = cooling_off_deadline(policy["receipt_date"], product.cooling_off_days, zone)
    if end <= now:
        return f"the cooling-off period of policy {number} ended at {end.isoformat()}"
    return None


async def _insert_invitation(conn: AsyncConnection, survey: Survey, catalog: Catalog, policy: Mapping[str, Any],
                             channel: str, key: bytes, now: datetime, zone: ZoneInfo) -> bool:
    """Insert the case (unless another request did just now: False) with its `invited` event."""
    product = catalog.for_policy(policy)
    end = cooling_off_deadline(policy["receipt_date"], product.cooling_off_days, zone)
    context = product.context(policy, deadline_at=end, zone=zone)
    salt = tokens.new_salt()
    invitation_id = new_id()
    result = await conn.execute(insert_for(conn)(survey_invitations).values(
        id=invitation_id, survey=survey.name, survey_version=survey.version, survey_hash=survey.hash,
        policy_number=policy["policy_number"], holder_key=hashlib.sha256(holder_id(policy).encode()).hexdigest(),
        channel=channel, phone=policy["phone"], token_salt=salt.hex(),
        token_hash=tokens.token_hash(tokens.make_token(key, salt)), status="issued", outcome=None, problem=False,
        problems=[], answers={}, context=context, flags=[], deadline=utc(end), created_at=now, updated_at=now,
    ).on_conflict_do_nothing(index_elements=["policy_number", "survey"]))
    if (result.rowcount or 0) != 1:
        return False
    await append_event(conn, invitation_id, "invited", {
        "survey": survey.name, "survey_version": survey.version, "survey_hash": survey.hash,
        "policy_number": policy["policy_number"], "channel": channel, "deadline": iso(end)}, now=now)
    return True


async def invitation_by_token(engine: AsyncEngine, token: str) -> dict[str, Any] | None:
    """The invitation a link's token names (the caller checks `tokens.well_formed` first)."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(survey_invitations).where(
            survey_invitations.c.token_hash == tokens.token_hash(token)))).first()
    return row_dict(row) if row else None


async def open_session(engine: AsyncEngine, invitation_id: str, *, now: datetime, client_ip: str | None,
                       user_agent: str | None, ttl_s: float) -> tuple[str, dict[str, Any]]:
    """A new page session for a visit of the link: (cookie value, session row). The first visit
    marks the invitation opened. A completed case still gets a session (its final page is shown);
    an expired or revoked one raises InvitationClosed."""
    now = utc(now)
    user_agent = user_agent[:USER_AGENT_MAX] if user_agent else user_agent
    async with write_transaction(engine) as conn:
        inv, closed = await open_invitation(conn, invitation_id, now, allow_completed=True)
        if inv is not None:
            cookie = tokens.new_secret()
            session = {"id": new_id(), "invitation_id": invitation_id, "cookie_hash": tokens.secret_hash(cookie),
                       "csrf_token": tokens.new_secret(), "created_at": now, "last_seen_at": now,
                       "expires_at": now + timedelta(seconds=ttl_s), "verified_at": None, "client_ip": client_ip,
                       "address_key": signals.address_key(client_ip) if client_ip else None,
                       "user_agent": user_agent}
            await conn.execute(survey_sessions.insert().values(**session))
            if inv["status"] == "issued":
                await conn.execute(update(survey_invitations).where(survey_invitations.c.id == invitation_id)
                                   .values(status="opened", opened_at=now, updated_at=now))
                await append_event(conn, invitation_id, "opened", {}, now=now, client_ip=client_ip,
                                   user_agent=user_agent)
            await append_event(conn, invitation_id, "session_started", {"session_id": session["id"]}, now=now,
                               client_ip=client_ip, user_agent=user_agent)
    if closed:
        raise InvitationClosed(invitation_id, closed)
    return cookie, session


async def session_by_cookie(engine: AsyncEngine, cookie: str, now: datetime) -> dict[str, Any] | None:
    """The live session of a cookie (None: unknown or idle past its time); each use extends it."""
    if not cookie:
        return None
    now = utc(now)
    async with engine.connect() as conn:
        row = (await conn.execute(select(survey_sessions).where(
            survey_sessions.c.cookie_hash == tokens.secret_hash(cookie)))).first()
    if row is None:
        return None
    return await _live(engine, row_dict(row), now)


# Built once (the hot path of the pages: every request): only the parameters change.
_VISIT = select(survey_invitations, *(c.label(f"session_{c.name}") for c in survey_sessions.c)).select_from(
    survey_invitations.outerjoin(survey_sessions, and_(
        survey_sessions.c.cookie_hash == bindparam("cookie_hash"),
        survey_sessions.c.invitation_id == survey_invitations.c.id))
).where(survey_invitations.c.id == bindparam("invitation_id"))


async def invitation_with_session(engine: AsyncEngine, invitation_id: str, cookie: str | None, now: datetime
                                  ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the invitation, the live session of this cookie on it): what every page request needs, in
    one query (None, None: no such invitation; a session of another invitation is None)."""
    now = utc(now)
    params = {"invitation_id": invitation_id, "cookie_hash": tokens.secret_hash(cookie) if cookie else ""}
    async with engine.connect() as conn:
        row = (await conn.execute(_VISIT, params)).first()
    if row is None:
        return None, None
    inv = row_dict(row)
    session = {c.name: inv.pop(f"session_{c.name}") for c in survey_sessions.c}
    if not cookie or session["id"] is None:
        return inv, None
    return inv, await _live(engine, session, now)


async def _live(engine: AsyncEngine, session: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """The session unless idle past its time; its use extends it (written at most every TOUCH_S)."""
    if session["expires_at"] <= now:
        return None
    if (now - session["last_seen_at"]).total_seconds() >= TOUCH_S:
        ttl = session["expires_at"] - session["last_seen_at"]
        session.update(last_seen_at=now, expires_at=now + ttl)
        async with write_transaction(engine) as conn:  # queued with the other writers (SQLite)
            await conn.execute(update(survey_sessions).where(survey_sessions.c.id == session["id"])
                               .values(last_seen_at=now, expires_at=now + ttl))
    return session
