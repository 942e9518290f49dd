"""The schema as `Database.create_schema` made it before migrations existed (frozen copy).

Revision ID: 0001
Revises: -
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import (
    JSON, Column, Date, DateTime, Float, ForeignKey, Integer, MetaData, String, Table, Text, UniqueConstraint,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen: these are the tables as they were, not imported from gateway/storage/database.py,
# which follows the newest revision.
metadata = MetaData()

Table(
    "calls", metadata,
    Column("id", Integer, primary_key=True),
    Column("call_id", String(128), nullable=False, index=True),
    Column("protocol", String(32), nullable=False),
    Column("caller_number", String(64)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("end_reason", String(128)),
    Column("audio_seconds", Float, nullable=False, default=0.0),
)
Table(
    "transcript_segments", metadata,
    Column("id", Integer, primary_key=True),
    Column("call_pk", Integer, ForeignKey("calls.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("start_s", Float),
    Column("end_s", Float),
    Column("confidence", Float),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
Table(
    "policies", metadata,
    Column("policy_number", String(64), primary_key=True),
    Column("product", String(128), nullable=False, default=""),
    Column("holder_name", String(64), nullable=False, default=""),
    Column("insured_name", String(64), nullable=False),
    Column("insured_id_number", String(18), nullable=False, index=True),
    Column("phone", String(32), nullable=False, default="", index=True),
    Column("start_date", Date),
    Column("expiry_date", Date),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Table(
    "claim_reports", metadata,
    Column("id", String(32), primary_key=True),
    Column("call_id", String(128), nullable=False, index=True),
    Column("flow", String(64), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("caller_number", String(64)),
    Column("policy_number", String(64)),
    Column("slots", JSON, nullable=False),
    Column("details", JSON, nullable=False),
    Column("transcript", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True),
    Column("report_id", String(32), ForeignKey("claim_reports.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, index=True),
    Column("leased_until", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_error", Text),
    UniqueConstraint("report_id", "event", name="uq_outbox_report_event"),
)


def upgrade() -> None:
    # checkfirst: a database from a version older than these tables gets the missing ones.
    metadata.create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
