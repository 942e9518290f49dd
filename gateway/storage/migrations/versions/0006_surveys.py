"""Follow-up surveys (电子化回访): invitations, their page sessions, one-time codes, identity failures,
submissions (a page posted twice is recorded once) and the hash-chained audit events.

Revision ID: 0006
Revises: 0005

`policies` gain `receipt_date` (回执日期: the cooling-off period counts from it) and
`holder_id_number` (the policyholder's, when not the insured's: identity is checked on it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("policies") as batch:
        batch.add_column(sa.Column("receipt_date", sa.Date, nullable=True))
        batch.add_column(sa.Column("holder_id_number", sa.String(18), nullable=True))
    op.create_table(
        "survey_invitations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("survey", sa.String(64), nullable=False),
        sa.Column("survey_version", sa.String(64), nullable=False),
        sa.Column("survey_hash", sa.String(64), nullable=False),
        sa.Column("policy_number", sa.String(64), nullable=False),
        sa.Column("holder_key", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("token_salt", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(24)),
        sa.Column("problem", sa.Boolean, nullable=False),
        sa.Column("problems", sa.JSON, nullable=False),
        sa.Column("answers", sa.JSON, nullable=False),
        sa.Column("context", sa.JSON, nullable=False),
        sa.Column("flags", sa.JSON, nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True)),
        sa.Column("verified_at", sa.DateTime(timezone=True)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.Column("contact_requested_at", sa.DateTime(timezone=True)),
        sa.Column("source", sa.String(16)),
        sa.Column("seconds", sa.Float),
        sa.UniqueConstraint("policy_number", "survey", name="uq_survey_invitations_policy_survey"),
        sa.UniqueConstraint("token_hash", name="uq_survey_invitations_token_hash"),
    )
    op.create_index("ix_survey_invitations_policy", "survey_invitations", ["policy_number"])
    op.create_index("ix_survey_invitations_open", "survey_invitations", ["status", "deadline"])
    op.create_index("ix_survey_invitations_survey", "survey_invitations", ["survey", "created_at"])
    op.create_table(
        "survey_sessions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("invitation_id", sa.String(32), sa.ForeignKey("survey_invitations.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("cookie_hash", sa.String(64), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True)),
        sa.Column("client_ip", sa.String(64)),
        sa.Column("address_key", sa.String(64)),
        sa.Column("user_agent", sa.String(512)),
        sa.UniqueConstraint("cookie_hash", name="uq_survey_sessions_cookie_hash"),
    )
    op.create_index("ix_survey_sessions_address", "survey_sessions", ["address_key"])
    op.create_table(
        "survey_otps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("invitation_id", sa.String(32), sa.ForeignKey("survey_invitations.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("session_id", sa.String(32)),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.Column("provider_id", sa.String(128)),
    )
    op.create_table(
        "survey_identity_failures",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("invitation_id", sa.String(32), sa.ForeignKey("survey_invitations.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("session_id", sa.String(32)),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "survey_submissions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("invitation_id", sa.String(32), sa.ForeignKey("survey_invitations.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("page", sa.String(64), nullable=False),
        sa.Column("submission_key", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("invitation_id", "submission_key", name="uq_survey_submissions_key"),
    )
    op.create_table(
        "survey_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("invitation_id", sa.String(32), sa.ForeignKey("survey_invitations.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("client_ip", sa.String(64)),
        sa.Column("user_agent", sa.String(512)),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("invitation_id", "seq", name="uq_survey_events_seq"),
    )


def downgrade() -> None:
    for table in ("survey_events", "survey_submissions", "survey_identity_failures", "survey_otps", "survey_sessions"):
        op.drop_table(table)
    op.drop_table("survey_invitations")
    with op.batch_alter_table("policies") as batch:
        batch.drop_column("holder_id_number")
        batch.drop_column("receipt_date")
