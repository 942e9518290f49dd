"""Which gateway process owns an open call or result, and tokens shared between processes.

Revision ID: 0004
Revises: 0003

`instances`: each running gateway (or scheduler) process has a row with a heartbeat; a process
whose heartbeat stopped is dead, and what it left open (calls without `ended_at`, results
`in_progress`) can be closed by a live one (gateway/storage/recovery.py; partial indexes on the open
rows keep its look every heartbeat cheap). `calls.instance_id` and `flow_results.instance_id`
name the owner; rows from before this revision have none (they are treated as the dead
process's). `provider_tokens`: an outside provider's access token (e.g. WeChat's), held once
for every process that shares the database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("instance_id", sa.String(36), primary_key=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True)),
    )
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("instance_id", sa.String(36), nullable=True))
        batch.create_index("ix_calls_instance_id", ["instance_id"])
    with op.batch_alter_table("flow_results") as batch:
        batch.add_column(sa.Column("instance_id", sa.String(36), nullable=True))
        batch.create_index("ix_flow_results_instance_id", ["instance_id"])
    # What recovery looks for every heartbeat: the open rows, few among many ended ones.
    for table in ("calls", "flow_results"):
        op.create_index(f"ix_{table}_open", table, ["instance_id"], postgresql_where=sa.text("ended_at IS NULL"),
                        sqlite_where=sa.text("ended_at IS NULL"))
    op.create_table(
        "provider_tokens",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("token", sa.Text, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("provider_tokens")
    for table in ("calls", "flow_results"):
        op.drop_index(f"ix_{table}_open", table_name=table)
    with op.batch_alter_table("flow_results") as batch:
        batch.drop_index("ix_flow_results_instance_id")
        batch.drop_column("instance_id")
    with op.batch_alter_table("calls") as batch:
        batch.drop_index("ix_calls_instance_id")
        batch.drop_column("instance_id")
    op.drop_table("instances")
