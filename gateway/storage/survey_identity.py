"""The identity step of a survey case: one-time codes (limited per minute and hour, locked after too
many wrong ones) and the check of the ID number's last four characters with the newest live code.
"""

from __future__ import annotations

import hmac
import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from surveys import otp as survey_otp

from gateway.storage.database import (
    policies, survey_identity_failures, survey_invitations, survey_otps, survey_sessions,
)
from gateway.storage.survey_common import (
    InvitationClosed, append_event, aware, holder_id, iso, lock_invitation, open_invitation, session_of, utc,
    write_transaction,
)

LOCK_S = 3600  # an invitation locked by too many wrong codes stays locked this long

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




# The identity check ----------------------------------------------------------

async def issue_code(engine: AsyncEngine, invitation_id: str, session_id: str, *, policy: survey_otp.OtpPolicy,
                     now: datetime) -> Issued:
    """A new one-time code for the policy's phone: (code, None), or (None, refusal) with refusal
    "wait_minute", "hour_limit" or "locked". The caller sends the code, then calls `code_sent`
    with `.otp_id` of the answer. Limits count every code of the invitation, whichever session."""
    now = utc(now)
    async with write_transaction(engine) as conn:
        inv, closed = await open_invitation(conn, invitation_id, now)
        if inv is not None:
            session = await session_of(conn, invitation_id, session_id)
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
                code = survey_otp.new_code(_rng, policy.length)
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
        inv, closed = await open_invitation(conn, invitation_id, now)
        if inv is not None:
            session = await session_of(conn, invitation_id, session_id)
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
    code_ok = survey_otp.code_matches(invitation_id, code or "", newest.code_hash)
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
        await append_event(conn, invitation_id, "locked", {"until": iso(until), "wrong": len(wrong)}, **where)
        return "locked"
    return "wrong"
