"""Follow-up survey cases (电子化回访) in the database: invitations, page sessions, one-time codes,
the identity check, answers page by page, completion, contact requests, voice answers, expiry and
revocation. What the pages (gateway/web/survey_pages.py), the voice flow and the API use.

Every change is one write transaction that locks the invitation's row first (survey_common), and
appends its audit event (hash-chained, surveys/audit.py) and its outbox rows in that transaction,
so a crash leaves either the change with its trail and deliveries or none of them. Idempotent:
the same invitation request returns the same case (UNIQUE policy and survey), a page form posted
twice is recorded once (UNIQUE submission key), a second completion returns the first's result
(the outbox rows are unique per topic and invitation).

States: issued -> opened (first visit) -> verified (identity passed) -> completed; or expired (the
cooling-off deadline passed first) or revoked (closed by the insurer). Outcomes: success and
problem (completed; a problem case has an answer other than the expected one), outside_cooling_off
(expired: the period ended without a completed survey, so the answers can no longer count as the
in-period 回访; completing after the deadline is refused and expires the case instead),
not_completed (revoked before it was completed).

Outbox topics (aggregate: the invitation id): `survey_result` for every completed or closed case,
`survey_problem` for a problem case (a follow-up task, `due_at` by `follow_up_due`), and
`survey_followup` when the customer asks to be called ("请电话联系我").
"""

from __future__ import annotations

import hashlib
import hmac
import random
import uuid
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from surveys import answers as survey_answers
from surveys import otp as survey_otp
from surveys import signals, tokens
from surveys.definition import Survey
from surveys.products import Catalog, deadline as cooling_off_deadline

from gateway.privacy import mask_number
from gateway.storage import outbox
from gateway.storage.database import (
    policies, survey_identity_failures, survey_invitations, survey_otps, survey_sessions, survey_submissions,
)
from gateway.storage.survey_common import (
    CHANNELS, CLOSED, OPEN, USER_AGENT_MAX, Incomplete, InvitationClosed, NotVerified, append_event, aware,
    insert_for, lock_invitation, row_dict, utc, write_transaction,
)
from gateway.storage.survey_queries import events, figures, get, query, verify_chain  # noqa: F401 - the API

__all__ = [
    "Incomplete", "InvitationClosed", "NotVerified", "append_event", "add_event", "create_invitations",
    "invitation_by_token", "open_session", "session_by_cookie", "issue_code", "code_sent", "verify_identity",
    "save_page", "complete", "request_contact", "record_voice_answers", "expire_due", "revoke", "get", "query",
    "figures", "events", "verify_chain", "follow_up_due",
]

TOPIC_RESULT = "survey_result"
TOPIC_PROBLEM = "survey_problem"
TOPIC_FOLLOWUP = "survey_followup"
DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")
MAX_BATCH = 1000
LOCK_S = 3600  # an invitation locked by too many wrong codes stays locked this long
TOUCH_S = 30.0  # a session's last_seen_at is written at most this often (every page view would be a write)
FOLLOW_UP_MARGIN = timedelta(days=2)  # a follow-up task is due at least this long before the deadline

_rng = random.SystemRandom()


class Issued(tuple):
    """issue_code's answer: unpacks as (code, refusal); `.otp_id` names the row for code_sent."""

    otp_id: int | None

    def __new__(cls, code: str | None, refusal: str | None, otp_id: int | None = None) -> "Issued":
        obj = super().__new__(cls, (code, refusal))
        obj.otp_id = otp_id
        return obj

    @property
    def code(self) -> str | None:
        return self[0]

    @property
    def refusal(self) -> str | None:
        return self[1]


def _new_id() -> str:
    return uuid.uuid4().hex


def _iso(value: datetime | None) -> str | None:
    return utc(value).isoformat() if value is not None else None


def _mask_name(name: str) -> str:
    return (name[0] + "*" * (len(name) - 1)) if len(name) > 1 else ("*" if name else "")


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


# Invitations ---------------------------------------------------------------

def link(base_url: str, key: bytes, salt_hex: str) -> str:
    """The invitation's link, computed again from its salt and the link key (never stored)."""
    return f"{base_url.rstrip('/')}/s/{tokens.make_token(key, bytes.fromhex(salt_hex))}"


def _item(row: Mapping[str, Any], base_url: str, key: bytes, created: bool) -> dict[str, Any]:
    return {"id": row["id"], "policy_number": row["policy_number"], "channel": row["channel"],
            "url": link(base_url, key, row["token_salt"]), "status": row["status"],
            "deadline": _iso(aware(row["deadline"])), "created": created}


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
    product = catalog.product(policy.get("product") or "")
    end = cooling_off_deadline(policy["receipt_date"], product.cooling_off_days, zone)
    if end <= now:
        return f"the cooling-off period of policy {number} ended at {end.isoformat()}"
    return None


async def _insert_invitation(conn: AsyncConnection, survey: Survey, catalog: Catalog, policy: Mapping[str, Any],
                             channel: str, key: bytes, now: datetime, zone: ZoneInfo) -> bool:
    """Insert the case (unless another request did just now: False) with its `invited` event."""
    product = catalog.product(policy.get("product") or "")
    end = cooling_off_deadline(policy["receipt_date"], product.cooling_off_days, zone)
    context = {**product.context(policy), "deadline": end.astimezone(zone).date().isoformat(),
               "holder_name_masked": _mask_name(str(policy.get("holder_name") or policy.get("insured_name") or ""))}
    salt = tokens.new_salt()
    invitation_id = _new_id()
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
        "policy_number": policy["policy_number"], "channel": channel, "deadline": _iso(end)}, now=now)
    return True


async def invitation_by_token(engine: AsyncEngine, token: str) -> dict[str, Any] | None:
    """The invitation a link's token names (the caller checks `tokens.well_formed` first)."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(survey_invitations).where(
            survey_invitations.c.token_hash == tokens.token_hash(token)))).first()
    return row_dict(row) if row else None


# Sessions ------------------------------------------------------------------

async def _expire_if_due(conn: AsyncConnection, inv: dict[str, Any], now: datetime) -> bool:
    """Past its deadline and still open: expired now (True)."""
    if inv["status"] in OPEN and aware(inv["deadline"]) < now:
        await _close(conn, inv, "expired", "outside_cooling_off", now, "the cooling-off deadline passed")
        return True
    return False


async def _open_invitation(conn: AsyncConnection, invitation_id: str, now: datetime,
                           allow_completed: bool = False) -> tuple[dict[str, Any] | None, str | None]:
    """The locked invitation, or why it cannot be changed (a status: expired/revoked/completed)."""
    inv = await lock_invitation(conn, invitation_id)
    if inv is None:
        raise LookupError(f"no invitation {invitation_id}")
    if await _expire_if_due(conn, inv, now):
        return None, "expired"
    if inv["status"] in ("expired", "revoked") or (inv["status"] == "completed" and not allow_completed):
        return None, inv["status"]
    return inv, None


async def open_session(engine: AsyncEngine, invitation_id: str, *, now: datetime, client_ip: str | None,
                       user_agent: str | None, ttl_s: float) -> tuple[str, dict[str, Any]]:
    """A new page session for a visit of the link: (cookie value, session row). The first visit
    marks the invitation opened. A completed case still gets a session (its final page is shown);
    an expired or revoked one raises InvitationClosed."""
    now = utc(now)
    user_agent = user_agent[:USER_AGENT_MAX] if user_agent else user_agent
    async with write_transaction(engine) as conn:
        inv, closed = await _open_invitation(conn, invitation_id, now, allow_completed=True)
        if inv is not None:
            cookie = tokens.new_secret()
            session = {"id": _new_id(), "invitation_id": invitation_id, "cookie_hash": tokens.secret_hash(cookie),
                       "csrf_token": tokens.new_secret(), "created_at": now, "last_seen_at": now,
                       "expires_at": now + timedelta(seconds=ttl_s), "verified_at": None, "client_ip": client_ip,
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
    session = row_dict(row)
    if session["expires_at"] <= now:
        return None
    if (now - session["last_seen_at"]).total_seconds() >= TOUCH_S:
        ttl = session["expires_at"] - session["last_seen_at"]
        session.update(last_seen_at=now, expires_at=now + ttl)
        async with engine.begin() as conn:
            await conn.execute(update(survey_sessions).where(survey_sessions.c.id == session["id"])
                               .values(last_seen_at=now, expires_at=now + ttl))
    return session


async def _session(conn: AsyncConnection, invitation_id: str, session_id: str | None) -> dict[str, Any]:
    row = (await conn.execute(select(survey_sessions).where(survey_sessions.c.id == session_id))).first() \
        if session_id else None
    if row is None or row.invitation_id != invitation_id:
        raise NotVerified(f"session {session_id} is not a session of invitation {invitation_id}")
    return row_dict(row)


# The identity check ----------------------------------------------------------

async def issue_code(engine: AsyncEngine, invitation_id: str, session_id: str, *, policy: survey_otp.OtpPolicy,
                     now: datetime) -> Issued:
    """A new one-time code for the policy's phone: (code, None), or (None, refusal) with refusal
    "wait_minute", "hour_limit" or "locked". The caller sends the code, then calls `code_sent`
    with `.otp_id` of the answer. Limits count every code of the invitation, whichever session."""
    now = utc(now)
    async with write_transaction(engine) as conn:
        inv, closed = await _open_invitation(conn, invitation_id, now)
        if inv is not None:
            session = await _session(conn, invitation_id, session_id)
            if inv["locked_until"] is not None and inv["locked_until"] > now:
                refusal: str | None = "locked"
            else:
                sent = (await conn.execute(select(survey_otps.c.sent_at).where(
                    survey_otps.c.invitation_id == invitation_id,
                    survey_otps.c.sent_at > now - timedelta(hours=1)))).scalars().all()
                refusal = survey_otp.send_refusal(policy, [aware(s) for s in sent], now)
            if refusal:
                await append_event(conn, invitation_id, "otp_refused", {"reason": refusal, "session_id": session_id},
                                   now=now, client_ip=session["client_ip"], user_agent=session["user_agent"])
                result = Issued(None, refusal)
            else:
                code = survey_otp.new_code(_rng)
                otp_id = (await conn.execute(survey_otps.insert().values(
                    invitation_id=invitation_id, session_id=session_id,
                    code_hash=survey_otp.code_hash(invitation_id, code), sent_at=now,
                    expires_at=now + timedelta(seconds=policy.ttl_s)).returning(survey_otps.c.id))).scalar_one()
                result = Issued(code, None, int(otp_id))
    if closed:
        raise InvitationClosed(invitation_id, closed)
    return result


async def code_sent(engine: AsyncEngine, otp_id: int, provider_id: str | None, now: datetime) -> None:
    """The SMS with the code went out: the provider's id on the code and an `otp_sent` event."""
    now = utc(now)
    async with write_transaction(engine) as conn:
        row = (await conn.execute(select(survey_otps).where(survey_otps.c.id == otp_id))).first()
        if row is None:
            raise LookupError(f"no one-time code {otp_id}")
        await lock_invitation(conn, row.invitation_id)
        await conn.execute(update(survey_otps).where(survey_otps.c.id == otp_id).values(provider_id=provider_id))
        await append_event(conn, row.invitation_id, "otp_sent", {"otp_id": otp_id, "provider_id": provider_id,
                                                                  "session_id": row.session_id}, now=now)


def _suffix_matches(given: str, id_number: str) -> bool:
    given = (given or "").strip().upper().replace("Ｘ", "X")
    expected = id_number.upper()[-4:]
    return len(expected) == 4 and hmac.compare_digest(given.encode(), expected.encode())


async def verify_identity(engine: AsyncEngine, invitation_id: str, session_id: str, *, id_suffix: str, code: str,
                          policy: survey_otp.OtpPolicy, now: datetime) -> str:
    """The identity step: "passed", "wrong" (ID suffix or code), "locked" (too many wrong codes in
    an hour: for an hour), or "expired_code" (no live code: ask for a new one). Both the ID
    number's last four characters (X in any case) and the newest unused, unexpired code must match."""
    now = utc(now)
    async with write_transaction(engine) as conn:
        inv, closed = await _open_invitation(conn, invitation_id, now)
        if inv is not None:
            session = await _session(conn, invitation_id, session_id)
            where = {"now": now, "client_ip": session["client_ip"], "user_agent": session["user_agent"]}
            if inv["locked_until"] is not None and inv["locked_until"] > now:
                await append_event(conn, invitation_id, "identity_failed", {"reason": "locked",
                                                                            "session_id": session_id}, **where)
                verdict = "locked"
            else:
                verdict = await _check_identity(conn, inv, session, id_suffix, code, policy, now, where)
    if closed:
        raise InvitationClosed(invitation_id, closed)
    return verdict


async def _check_identity(conn: AsyncConnection, inv: dict[str, Any], session: dict[str, Any], id_suffix: str,
                          code: str, policy: survey_otp.OtpPolicy, now: datetime, where: dict[str, Any]) -> str:
    invitation_id, session_id = inv["id"], session["id"]
    newest = (await conn.execute(select(survey_otps).where(
        survey_otps.c.invitation_id == invitation_id, survey_otps.c.used_at.is_(None))
        .order_by(survey_otps.c.sent_at.desc(), survey_otps.c.id.desc()).limit(1))).first()
    if newest is None or aware(newest.expires_at) <= now:
        await append_event(conn, invitation_id, "identity_failed", {"reason": "expired_code",
                                                                    "session_id": session_id}, **where)
        return "expired_code"
    record = (await conn.execute(select(policies).where(policies.c.policy_number == inv["policy_number"]))
              ).mappings().first()
    id_ok = record is not None and _suffix_matches(id_suffix, holder_id(record))
    code_ok = hmac.compare_digest(survey_otp.code_hash(invitation_id, (code or "").strip()), newest.code_hash)
    if id_ok and code_ok:
        await conn.execute(update(survey_otps).where(survey_otps.c.id == newest.id).values(used_at=now))
        await conn.execute(update(survey_sessions).where(survey_sessions.c.id == session_id).values(verified_at=now))
        values: dict[str, Any] = {"updated_at": now}
        if inv["status"] in ("issued", "opened"):
            values.update(status="verified", verified_at=now)
        await conn.execute(update(survey_invitations).where(survey_invitations.c.id == invitation_id).values(**values))
        await append_event(conn, invitation_id, "identity_passed", {"session_id": session_id, "otp_id": newest.id,
                                                                    "source": "web"}, **where)
        return "passed"
    reason = "wrong_code" if id_ok else "wrong_id"
    await conn.execute(survey_identity_failures.insert().values(invitation_id=invitation_id, session_id=session_id,
                                                                reason=reason, at=now))
    await append_event(conn, invitation_id, "identity_failed", {"reason": reason, "session_id": session_id}, **where)
    wrong = (await conn.execute(select(survey_identity_failures.c.at).where(
        survey_identity_failures.c.invitation_id == invitation_id,
        survey_identity_failures.c.at > now - timedelta(hours=1)))).scalars().all()
    if survey_otp.locked(policy, [aware(w) for w in wrong], now):
        until = now + timedelta(seconds=LOCK_S)
        await conn.execute(update(survey_invitations).where(survey_invitations.c.id == invitation_id)
                           .values(locked_until=until, updated_at=now))
        # The code in hand is spent too: after the lock a fresh one is needed.
        await conn.execute(update(survey_otps).where(survey_otps.c.invitation_id == invitation_id,
                                                     survey_otps.c.used_at.is_(None)).values(used_at=now))
        await append_event(conn, invitation_id, "locked", {"until": _iso(until), "wrong": len(wrong)}, **where)
        return "locked"
    return "wrong"


# Answers ---------------------------------------------------------------------

async def save_page(engine: AsyncEngine, invitation_id: str, session_id: str, *, page: str,
                    answers: Mapping[str, Any], submission_key: str, now: datetime) -> bool:
    """Record one page's answers (already read and checked by surveys.answers.read_page); False
    when this submission key was recorded before (a double tap or retry: nothing is written).
    The session must have passed the identity check; a closed case raises InvitationClosed."""
    now = utc(now)
    if not submission_key or len(submission_key) > 64:
        raise ValueError("submission_key must be 1 to 64 characters")
    async with write_transaction(engine) as conn:
        inv = await lock_invitation(conn, invitation_id)
        if inv is None:
            raise LookupError(f"no invitation {invitation_id}")
        seen = (await conn.execute(select(survey_submissions.c.id).where(
            survey_submissions.c.invitation_id == invitation_id,
            survey_submissions.c.submission_key == submission_key))).first()
        if seen is not None:
            return False  # checked before the status: a re-post after the last page is a no-op, not an error
        closed = "expired" if await _expire_if_due(conn, inv, now) else \
            (inv["status"] if inv["status"] in CLOSED else None)
        if closed is None:
            session = await _session(conn, invitation_id, session_id)
            if session["verified_at"] is None or session["expires_at"] <= now:
                raise NotVerified(f"session {session_id} has not passed the identity check or has expired")
            result = await conn.execute(insert_for(conn)(survey_submissions).values(
                invitation_id=invitation_id, page=page, submission_key=submission_key, at=now)
                .on_conflict_do_nothing(index_elements=["invitation_id", "submission_key"]))
            if (result.rowcount or 0) != 1:
                return False
            merged = {**(inv["answers"] or {}), **dict(answers)}
            await conn.execute(update(survey_invitations).where(survey_invitations.c.id == invitation_id)
                               .values(answers=merged, updated_at=now))
            await append_event(conn, invitation_id, "answers", {"page": page, "answers": dict(answers),
                                                                "submission_key": submission_key},
                               now=now, client_ip=session["client_ip"], user_agent=session["user_agent"])
    if closed:
        raise InvitationClosed(invitation_id, closed)
    return True


async def add_event(engine: AsyncEngine, invitation_id: str, kind: str, data: Mapping[str, Any], *, now: datetime,
                    client_ip: str | None = None, user_agent: str | None = None) -> str:
    """append_event in a transaction of its own (e.g. `page_shown` with the served page's sha256)."""
    async with write_transaction(engine) as conn:
        if await lock_invitation(conn, invitation_id) is None:
            raise LookupError(f"no invitation {invitation_id}")
        return await append_event(conn, invitation_id, kind, data, now=utc(now), client_ip=client_ip,
                                  user_agent=user_agent)


# Completion --------------------------------------------------------------------

def _result(inv: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": inv["id"], "status": inv["status"], "outcome": inv["outcome"], "problem": bool(inv["problem"]),
            "problems": list(inv["problems"] or []), "flags": list(inv["flags"] or []), "seconds": inv["seconds"],
            "source": inv["source"], "completed_at": _iso(aware(inv["completed_at"]))}


def result_payload(inv: Mapping[str, Any]) -> dict[str, Any]:
    """The `survey_result` delivery: the case as the insurer's system needs it."""
    deadline, completed = aware(inv["deadline"]), aware(inv["completed_at"])
    return {
        "event": TOPIC_RESULT, "invitation_id": inv["id"], "survey": inv["survey"],
        "survey_version": inv["survey_version"],
        "survey_hash": inv["survey_hash"], "policy_number": inv["policy_number"], "status": inv["status"],
        "outcome": inv["outcome"], "problem": bool(inv["problem"]), "problems": list(inv["problems"] or []),
        "answers": dict(inv["answers"] or {}), "flags": list(inv["flags"] or []), "source": inv["source"],
        "seconds": inv["seconds"], "deadline": _iso(deadline), "completed_at": _iso(completed),
        "closed_at": _iso(aware(inv.get("closed_at"))),
        "inside_cooling_off": completed is not None and completed <= deadline,
    }


async def _shared_counts(conn: AsyncConnection, invitation_id: str) -> tuple[int, int]:
    """Policyholders seen on this case's devices (address + user agent) and addresses: the most
    distinct holders any one of them passed the identity check for, this case's included."""
    mine = (await conn.execute(select(survey_sessions.c.client_ip, survey_sessions.c.user_agent).where(
        survey_sessions.c.invitation_id == invitation_id, survey_sessions.c.verified_at.is_not(None),
        survey_sessions.c.client_ip.is_not(None)).distinct())).all()
    device = address = 0
    holders = func.count(survey_invitations.c.holder_key.distinct())
    base = select(holders).select_from(survey_sessions.join(
        survey_invitations, survey_invitations.c.id == survey_sessions.c.invitation_id)).where(
        survey_sessions.c.verified_at.is_not(None))
    for ip, agent in mine:
        address = max(address, int((await conn.execute(base.where(survey_sessions.c.client_ip == ip))).scalar_one()))
        same_agent = survey_sessions.c.user_agent.is_(None) if agent is None else survey_sessions.c.user_agent == agent
        device = max(device, int((await conn.execute(
            base.where(survey_sessions.c.client_ip == ip, same_agent))).scalar_one()))
    return device, address


async def _complete(conn: AsyncConnection, inv: dict[str, Any], survey: Survey, now: datetime, source: str,
                    seconds: float | None, min_seconds_per_question: float, shared_limit: int,
                    zone: ZoneInfo) -> dict[str, Any]:
    answers, context = dict(inv["answers"] or {}), dict(inv["context"] or {})
    if not survey_answers.is_complete(survey, answers, context):
        raise Incomplete(f"invitation {inv['id']}: not every required question is answered")
    outcome = survey_answers.outcome(survey, answers, context)
    problems = [{"question": p.question, "expected": p.expected, "given": p.given}
                for p in survey_answers.problems(survey, answers, context)]
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
            "due_at": _iso(follow_up_due(now, aware(inv["deadline"]), zone)), "deadline": _iso(aware(inv["deadline"])),
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
        closed = "expired" if await _expire_if_due(conn, inv, now) else \
            (inv["status"] if inv["status"] in CLOSED else None)
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
        mine = (await conn.execute(select(survey_sessions.c.client_ip, survey_sessions.c.user_agent).where(
            survey_sessions.c.invitation_id == invitation_id, survey_sessions.c.verified_at.is_not(None),
            survey_sessions.c.client_ip.is_not(None)).distinct())).all()
        peers: dict[str, set[str]] = {}
        for ip, agent in mine:
            rows = (await conn.execute(select(survey_sessions.c.invitation_id, survey_sessions.c.user_agent).where(
                survey_sessions.c.client_ip == ip, survey_sessions.c.verified_at.is_not(None),
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


async def _close(conn: AsyncConnection, inv: dict[str, Any], status: str, outcome: str, now: datetime,
                 reason: str) -> dict[str, Any]:
    values = {"status": status, "outcome": outcome, "closed_at": now, "updated_at": now}
    await conn.execute(update(survey_invitations).where(survey_invitations.c.id == inv["id"]).values(**values))
    inv.update(values)
    await append_event(conn, inv["id"], status, {"outcome": outcome, "reason": reason}, now=now)
    await outbox.enqueue(conn, topic=TOPIC_RESULT, aggregate_id=inv["id"], payload=result_payload(inv))
    return inv


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
            if inv is not None and await _expire_if_due(conn, inv, now):
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
            await _close(conn, inv, "revoked", "not_completed", now, reason or "revoked")
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
            "phone": inv["phone"], "page": page, "note": note, "requested_at": _iso(now),
            "due_at": _iso(follow_up_due(now, deadline, zone)), "deadline": _iso(deadline), "task": "客户要求电话回访"})
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
        closed = "expired" if await _expire_if_due(conn, inv, now) else \
            (inv["status"] if inv["status"] in CLOSED else None)
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
