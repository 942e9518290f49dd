"""Reminders: policy openids and consent, reminder rows, receipts, opt-outs, missing documents.

Revision ID: 0005
Revises: 0004

`policies` gain `wechat_openid` and consent per channel and for marketing (NULL: not stated).
`reminders` are the scheduler's rows (one per subject, cycle, step and channel: the dedupe key),
`reminder_receipts` make a replayed receipt a no-op, `reminder_events` are each row's history,
`opt_outs` who asked not to be reached, `claim_documents` what a claim report still lacks,
`campaign_states` which campaigns are paused.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CONSENTS = ("consent_sms", "consent_wechat", "consent_voice", "consent_marketing")


def upgrade() -> None:
    with op.batch_alter_table("policies") as batch:
        batch.add_column(sa.Column("wechat_openid", sa.String(64), nullable=True))
        for name in CONSENTS:
            batch.add_column(sa.Column(name, sa.Boolean, nullable=True))
        batch.create_index("ix_policies_wechat_openid", ["wechat_openid"])
    op.create_table(
        "reminders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("delivery_id", sa.String(36), nullable=False),
        sa.Column("dedupe_key", sa.String(400), nullable=False),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("channel_index", sa.Integer, nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("cycle", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(128), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("context", sa.JSON, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("leased_by", sa.String(64)),
        sa.Column("provider_id", sa.String(128)),
        sa.Column("outcome", sa.String(32)),
        sa.Column("last_error", sa.Text),
        sa.Column("skip_reason", sa.String(64)),
        sa.Column("escalate_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("accepted_at", sa.DateTime(timezone=True)),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("read_at", sa.DateTime(timezone=True)),
        sa.Column("final_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("dedupe_key", name="uq_reminders_dedupe_key"),
        sa.UniqueConstraint("delivery_id", name="uq_reminders_delivery_id"),
    )
    op.create_index("ix_reminders_due", "reminders", ["status", "due_at"])
    op.create_index("ix_reminders_subject", "reminders", ["subject"])
    op.create_index("ix_reminders_recipient_sent", "reminders", ["recipient", "channel", "sent_at"])
    op.create_index("ix_reminders_provider_id", "reminders", ["provider", "provider_id"])
    op.create_table(
        "reminder_receipts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("receipt_key", sa.String(300), nullable=False),
        sa.Column("reminder_id", sa.Integer, index=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("provider_id", sa.String(128)),
        sa.Column("delivery_id", sa.String(36)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32)),
        sa.Column("error", sa.Text),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("receipt_key", name="uq_reminder_receipts_key"),
    )
    op.create_table(
        "reminder_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("reminder_id", sa.Integer, nullable=False, index=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text),
    )
    op.create_table(
        "opt_outs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("recipient", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("recipient", "channel", "purpose", name="uq_opt_outs"),
    )
    op.create_table(
        "claim_documents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("result_id", sa.String(64), sa.ForeignKey("flow_results.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("document", sa.String(128), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("result_id", "document", name="uq_claim_documents"),
    )
    op.create_table(
        "campaign_states",
        sa.Column("campaign", sa.String(64), primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("campaign_states", "claim_documents", "opt_outs", "reminder_events", "reminder_receipts"):
        op.drop_table(table)
    op.drop_table("reminders")
    with op.batch_alter_table("policies") as batch:
        batch.drop_index("ix_policies_wechat_openid")
        for name in reversed(CONSENTS):
            batch.drop_column(name)
        batch.drop_column("wechat_openid")
