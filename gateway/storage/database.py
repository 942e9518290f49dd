"""Storage: the tables as of the newest migration, the engine (SQLite by default, PostgreSQL when a
URL is given; SQLAlchemy async) and the few call-record queries calls need."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

metadata = MetaData()

calls = Table(
    "calls",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("call_id", String(128), nullable=False, index=True),
    Column("protocol", String(32), nullable=False),
    Column("caller_number", String(64)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("end_reason", String(128)),
    Column("audio_seconds", Float, nullable=False, default=0.0),
    Column("instance_id", String(36), index=True),  # the process that runs the call (instances)
)

transcript_segments = Table(
    "transcript_segments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("call_pk", Integer, ForeignKey("calls.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("start_s", Float),
    Column("end_s", Float),
    Column("confidence", Float),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


# The insurer's policy records, imported by API or CSV; claim calls look the insured up here
# and reminder campaigns reuse the table.
policies = Table(
    "policies",
    metadata,
    Column("policy_number", String(64), primary_key=True),
    Column("product", String(128), nullable=False, default=""),
    Column("holder_name", String(64), nullable=False, default=""),
    Column("insured_name", String(64), nullable=False),
    Column("insured_id_number", String(18), nullable=False, index=True),
    Column("phone", String(32), nullable=False, default="", index=True),
    Column("start_date", Date),
    Column("expiry_date", Date),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Reminders (0005): the WeChat follower's openid, and consent per channel and for marketing;
    # NULL is "not stated" (allowed), False a refusal.
    Column("wechat_openid", String(64), index=True),
    Column("consent_sms", Boolean),
    Column("consent_wechat", Boolean),
    Column("consent_voice", Boolean),
    Column("consent_marketing", Boolean),
    # Surveys (0006): 回执日期, from which the cooling-off period counts; the policyholder's ID number
    # when it is not the insured's (the survey's identity check uses it).
    Column("receipt_date", Date),
    Column("holder_id_number", String(18)),
)

# What a flow (claim report, survey, reminder call, ...) collected on one call, saved after
# every caller turn. `topic` is what its final form is delivered as (see outbox below);
# `subject_phone` and `policy_number` are who the result is about, for look-ups.
flow_results = Table(
    "flow_results",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("flow", String(64), nullable=False, index=True),
    Column("topic", String(64), nullable=False, index=True),
    Column("call_id", String(128), nullable=False, index=True),
    Column("status", String(32), nullable=False, index=True),  # in_progress, complete, partial, ... or flow-defined
    Column("caller_number", String(64)),
    Column("policy_number", String(64), index=True),
    Column("subject_phone", String(64), index=True),
    Column("slots", JSON, nullable=False),
    Column("details", JSON, nullable=False),  # per slot: value, confidence, source, turn
    Column("transcript", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("instance_id", String(36), index=True),  # the process that runs the call (instances)
)

# Open calls and results, by owner: what recovery (gateway/storage/recovery.py) looks for every heartbeat.
for _table in (calls, flow_results):
    Index(f"ix_{_table.name}_open", _table.c.instance_id, postgresql_where=_table.c.ended_at.is_(None),
          sqlite_where=_table.c.ended_at.is_(None))

# Running gateway and scheduler processes, with a heartbeat: what a dead one left open
# (calls, results in progress) is closed by a live one.
instances = Table(
    "instances",
    metadata,
    Column("instance_id", String(36), primary_key=True),
    Column("role", String(32), nullable=False),  # gateway, scheduler
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False, index=True),
    Column("stopped_at", DateTime(timezone=True)),
)

# An outside provider's access token (WeChat's), one for every process sharing the database.
provider_tokens = Table(
    "provider_tokens",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("token", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Deliveries, written by their producer in the same transaction as the change they carry,
# so a restart neither loses nor repeats one (unique per topic and aggregate).
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    # What receivers deduplicate on (X-Gateway-Delivery): a UUID, unique across databases.
    Column("delivery_id", String(36), nullable=False),
    Column("topic", String(64), nullable=False),
    Column("aggregate_id", String(128), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, index=True),
    Column("leased_until", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_error", Text),
    UniqueConstraint("topic", "aggregate_id", name="uq_outbox_topic_aggregate"),
    UniqueConstraint("delivery_id", name="uq_outbox_delivery_id"),
)


# Reminders (scheduler/): one row per subject, cycle, step and channel, moved through
# due -> sending -> accepted -> delivered/failed/escalated (or skipped, cancelled, dead).
reminders = Table(
    "reminders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("delivery_id", String(36), nullable=False),  # ours; travels with the send (OutId, ...)
    Column("dedupe_key", String(400), nullable=False),  # campaign|subject|cycle|step|channel
    Column("campaign", String(64), nullable=False),
    Column("step", String(64), nullable=False),
    Column("channel_index", Integer, nullable=False, default=0),  # position in the step's channels
    Column("subject", String(128), nullable=False),  # policy number or claim (flow result) id
    Column("cycle", String(64), nullable=False),  # e.g. the expiry date a renewal reminder is about
    Column("channel", String(16), nullable=False),  # sms, wechat, voice, task
    Column("provider", String(64), nullable=False),
    Column("recipient", String(128), nullable=False),  # phone number or openid
    Column("purpose", String(16), nullable=False),  # service, marketing
    Column("context", JSON, nullable=False),  # template values and the subject's addresses
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),  # not sent by then: skipped (expired)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_until", DateTime(timezone=True)),
    Column("leased_by", String(64)),
    Column("provider_id", String(128)),
    Column("outcome", String(32)),  # voice: the reminder flow's outcome
    Column("last_error", Text),
    Column("skip_reason", String(64)),
    Column("escalate_at", DateTime(timezone=True)),  # accepted, not delivered/read by then: next channel
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),  # when it went to sending (what caps count)
    Column("accepted_at", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("read_at", DateTime(timezone=True)),
    Column("final_at", DateTime(timezone=True)),
    UniqueConstraint("dedupe_key", name="uq_reminders_dedupe_key"),
    UniqueConstraint("delivery_id", name="uq_reminders_delivery_id"),
    Index("ix_reminders_due", "status", "due_at"),
    Index("ix_reminders_subject", "subject"),
    Index("ix_reminders_recipient_sent", "recipient", "channel", "sent_at"),
    Index("ix_reminders_provider_id", "provider", "provider_id"),
)

# Every receipt applied once: a replay finds its key and changes nothing.
reminder_receipts = Table(
    "reminder_receipts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("receipt_key", String(300), nullable=False),  # provider|provider_id or delivery_id|status
    Column("reminder_id", Integer, index=True),
    Column("provider", String(64), nullable=False),
    Column("provider_id", String(128)),
    Column("delivery_id", String(36)),
    Column("status", String(16), nullable=False),
    Column("outcome", String(32)),
    Column("error", Text),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("receipt_key", name="uq_reminder_receipts_key"),
)

# What happened to a reminder, in order (per-recipient history, dead letters' story).
reminder_events = Table(
    "reminder_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("reminder_id", Integer, nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("detail", Text),
)

# Who asked not to be reached: recipient on a channel ("*": all) for a purpose ("*": all).
opt_outs = Table(
    "opt_outs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("recipient", String(128), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("source", String(64), nullable=False),  # sms_reply, wechat_unsubscribe, voice_refused, api
    Column("at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("recipient", "channel", "purpose", name="uq_opt_outs"),
)

# Documents a claim report still lacks; received_at set stops its reminders.
claim_documents = Table(
    "claim_documents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("result_id", String(64), ForeignKey("flow_results.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("document", String(128), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True)),
    UniqueConstraint("result_id", "document", name="uq_claim_documents"),
)

# Paused campaigns, shared by every scheduler process.
campaign_states = Table(
    "campaign_states",
    metadata,
    Column("campaign", String(64), primary_key=True),
    Column("paused", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


# Follow-up surveys (0006, gateway/storage/surveys.py): one invitation per policy and survey, its
# link token kept only as salt and hash; status issued -> opened -> verified -> completed, or
# expired / revoked; outcome success, problem, not_completed or outside_cooling_off.
survey_invitations = Table(
    "survey_invitations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("survey", String(64), nullable=False),
    Column("survey_version", String(64), nullable=False),
    Column("survey_hash", String(64), nullable=False),
    Column("policy_number", String(64), nullable=False),
    Column("holder_key", String(64), nullable=False),  # sha256 of the policyholder's ID number (shared-device signal)
    Column("channel", String(16), nullable=False),  # sms, wechat, voice: how it is sent first
    Column("phone", String(32), nullable=False),
    Column("token_salt", String(32), nullable=False),  # hex; the token is HMAC(link key, salt)
    Column("token_hash", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("outcome", String(24)),
    Column("problem", Boolean, nullable=False, default=False),
    Column("problems", JSON, nullable=False),
    Column("answers", JSON, nullable=False),  # by question name
    Column("context", JSON, nullable=False),  # the product's variables (visibleIf, titles)
    Column("flags", JSON, nullable=False),  # too_fast, shared_device, shared_address
    Column("deadline", DateTime(timezone=True), nullable=False),  # end of the cooling-off period
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("opened_at", DateTime(timezone=True)),
    Column("verified_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),  # expired or revoked
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("locked_until", DateTime(timezone=True)),  # too many wrong codes
    Column("contact_requested_at", DateTime(timezone=True)),
    Column("source", String(16)),  # web, voice: who completed it
    Column("seconds", Float),  # identity passed -> completed
    UniqueConstraint("policy_number", "survey", name="uq_survey_invitations_policy_survey"),
    UniqueConstraint("token_hash", name="uq_survey_invitations_token_hash"),
    Index("ix_survey_invitations_policy", "policy_number"),
    Index("ix_survey_invitations_open", "status", "deadline"),
    Index("ix_survey_invitations_survey", "survey", "created_at"),
)

# A browser's session on one invitation: the cookie (hashed), its CSRF token, where it came from.
survey_sessions = Table(
    "survey_sessions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("invitation_id", String(32), ForeignKey("survey_invitations.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("cookie_hash", String(64), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("verified_at", DateTime(timezone=True)),
    Column("client_ip", String(64)),
    Column("address_key", String(64)),  # what counts as one address (IPv4, IPv6 /64): the shared-device signal
    Column("user_agent", String(512)),
    UniqueConstraint("cookie_hash", name="uq_survey_sessions_cookie_hash"),
    Index("ix_survey_sessions_address", "address_key"),
)

# One-time codes (hashed) sent by SMS, and wrong attempts (what locks an invitation).
survey_otps = Table(
    "survey_otps",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("invitation_id", String(32), ForeignKey("survey_invitations.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("session_id", String(32)),
    Column("code_hash", String(64), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("provider_id", String(128)),
)

survey_identity_failures = Table(
    "survey_identity_failures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("invitation_id", String(32), ForeignKey("survey_invitations.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("session_id", String(32)),
    Column("reason", String(32), nullable=False),  # wrong_code, wrong_id
    Column("at", DateTime(timezone=True), nullable=False),
)

# Each posted page form once (its one-time submission key): a double tap or retry records nothing twice.
survey_submissions = Table(
    "survey_submissions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("invitation_id", String(32), ForeignKey("survey_invitations.id", ondelete="CASCADE"), nullable=False),
    Column("page", String(64), nullable=False),
    Column("submission_key", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("invitation_id", "submission_key", name="uq_survey_submissions_key"),
)

# The audit trail, append only: each event's hash covers the previous one's (surveys/audit.py).
survey_events = Table(
    "survey_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("invitation_id", String(32), ForeignKey("survey_invitations.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("data", JSON, nullable=False),
    Column("client_ip", String(64)),
    Column("user_agent", String(512)),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("invitation_id", "seq", name="uq_survey_events_seq"),
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # A writer waits up to 30 s for another's lock (the scheduler's claims, receipts) rather than 5.
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # WAL: readers (the API) don't block the writer (calls); foreign keys for cascades.
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True)


class Database:
    """The gateway's tables and the few queries calls need."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, url: str) -> "Database":
        return cls(create_engine(url))

    async def create_schema(self) -> str:
        """Bring the schema to the newest migration (gateway/storage/migrate.py); the revision it is at."""
        from gateway.storage import migrate  # migrate needs none of this module; the import stays one-way

        return await migrate.upgrade(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(select(1))

    async def start_call(self, call_id: str, protocol: str, caller_number: str | None,
                         instance_id: str | None = None) -> int:
        """A call row; `instance_id`: the process running the call (gateway/storage/instances.py)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                insert(calls)
                .values(call_id=call_id, protocol=protocol, caller_number=caller_number, started_at=utcnow(),
                        audio_seconds=0.0, instance_id=instance_id)
                .returning(calls.c.id)
            )
            return int(result.scalar_one())

    async def add_segment(
        self, call_pk: int, seq: int, text: str, start: float | None, end: float | None, confidence: float | None
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(transcript_segments).values(
                    call_pk=call_pk, seq=seq, text=text, start_s=start, end_s=end, confidence=confidence, created_at=utcnow()
                )
            )

    async def end_call(self, call_pk: int, reason: str, audio_seconds: float) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(calls)
                .where(calls.c.id == call_pk)
                .values(ended_at=utcnow(), end_reason=reason, audio_seconds=audio_seconds)
            )

    async def call_transcript(self, call_id: str) -> list[dict]:
        """Every stored final segment of the most recent call with this id, in order."""
        async with self.engine.connect() as conn:
            call_pk = (
                await conn.execute(
                    select(calls.c.id).where(calls.c.call_id == call_id).order_by(calls.c.id.desc()).limit(1)
                )
            ).scalar_one_or_none()
            if call_pk is None:
                return []
            rows = await conn.execute(
                select(transcript_segments).where(transcript_segments.c.call_pk == call_pk).order_by(transcript_segments.c.seq)
            )
            return [dict(row._mapping) for row in rows]

    async def get_call(self, call_id: str) -> dict | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(calls).where(calls.c.call_id == call_id).order_by(calls.c.id.desc()).limit(1))
            ).first()
            return dict(row._mapping) if row else None
