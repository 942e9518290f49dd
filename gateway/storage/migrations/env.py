"""Alembic's environment: migrate on the connection gateway/storage/migrate.py hands in.

No alembic.ini and no URL here: the runner has already opened the connection, taken
the migration lock and begun the transaction, and commits it when every step is done.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():  # the runner's transaction is already open: this joins it
    context.run_migrations()
