"""One store for every flow's results and a generic outbox; claim reports and their deliveries move over.

Revision ID: 0002
Revises: 0001

claim_reports rows become flow_results rows (same ids, slots, details, transcript,
status and timestamps; topic `claim_report`, the event they were delivered as;
ended_at = updated_at for final ones). Outbox rows keep their ids (receivers
deduplicate on them) and delivery state; `event` becomes `topic`, `report_id`
becomes `aggregate_id`, and the foreign key to claim_reports goes: the outbox
no longer knows what it carries.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CLAIM_FINAL_STATUSES = ("complete", "partial", "transferred")  # as of revision 0001


def upgrade() -> None:
    op.create_table(
        "flow_results",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("flow", sa.String(64), nullable=False, index=True),
        sa.Column("topic", sa.String(64), nullable=False, index=True),
        sa.Column("call_id", sa.String(128), nullable=False, index=True),
        sa.Column("status", sa.String(32), nullable=False, index=True),
        sa.Column("caller_number", sa.String(64)),
        sa.Column("policy_number", sa.String(64), index=True),
        sa.Column("subject_phone", sa.String(64), index=True),
        sa.Column("slots", sa.JSON, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("transcript", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
    )
    finals = ", ".join(f"'{s}'" for s in CLAIM_FINAL_STATUSES)
    op.execute(
        "INSERT INTO flow_results (id, flow, topic, call_id, status, caller_number, policy_number, subject_phone,"
        " slots, details, transcript, created_at, updated_at, ended_at)"
        " SELECT id, flow, 'claim_report', call_id, status, caller_number, policy_number, caller_number,"
        f" slots, details, transcript, created_at, updated_at, CASE WHEN status IN ({finals}) THEN updated_at END"
        " FROM claim_reports"
    )

    # A plain copy first: the new table reuses the old one's name and index names.
    op.execute("CREATE TABLE outbox_0001 AS SELECT * FROM outbox")
    op.drop_table("outbox")
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("aggregate_id", sa.String(128), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("leased_until", sa.DateTime(timezone=True)),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("topic", "aggregate_id", name="uq_outbox_topic_aggregate"),
    )
    op.execute(
        "INSERT INTO outbox (id, topic, aggregate_id, payload, created_at, attempts, next_attempt_at, leased_until,"
        " delivered_at, last_error)"
        " SELECT id, event, report_id, payload, created_at, attempts, next_attempt_at, leased_until, delivered_at,"
        " last_error FROM outbox_0001"
    )
    op.drop_table("outbox_0001")
    if op.get_bind().dialect.name == "postgresql":
        # The ids were copied explicitly: new rows must number on after them.
        op.execute(
            "SELECT setval(pg_get_serial_sequence('outbox', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM outbox"
        )
    op.drop_table("claim_reports")


def downgrade() -> None:
    raise NotImplementedError("0002 is not reversible: results of other flows have no place in claim_reports")
