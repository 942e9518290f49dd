"""A globally unique delivery id per outbox row (X-Gateway-Delivery), instead of the row's number.

Revision ID: 0003
Revises: 0002

Receivers deduplicate on X-Gateway-Delivery. The row id is numbered per database, so two
gateways on their own databases, or a restored backup, sent 1, 2, 3 again for other
deliveries. Each row now carries a UUID of its own; rows already queued or delivered get
one here, each a fresh one.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("delivery_id", sa.String(36), nullable=True))
    outbox = sa.table("outbox", sa.column("id", sa.Integer), sa.column("delivery_id", sa.String(36)))
    bind = op.get_bind()
    for row_id in bind.execute(sa.select(outbox.c.id)).scalars().all():
        bind.execute(outbox.update().where(outbox.c.id == row_id).values(delivery_id=str(uuid.uuid4())))
    # Batch mode: SQLite cannot add NOT NULL or a constraint to a column in place.
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("delivery_id", existing_type=sa.String(36), nullable=False)
        batch.create_unique_constraint("uq_outbox_delivery_id", ["delivery_id"])


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint("uq_outbox_delivery_id", type_="unique")
        batch.drop_column("delivery_id")
