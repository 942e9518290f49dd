"""Schema migrations: where a database is, and bringing it to the newest revision, one migrator at a time.

Alembic is configured here, in code (no alembic.ini): the revisions live in
gateway/storage/migrations/versions/ and ship with the package. A database made
by `create_all` before migrations existed has no alembic_version table; it is
recognized by its tables as revision 0001, stamped, then upgraded.

Only one process migrates at a time: on PostgreSQL a session advisory lock on a
fixed key (a second gateway waits, then finds the schema at head); on SQLite the
upgrade runs in one BEGIN IMMEDIATE transaction, which holds the write lock.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Fixed, arbitrary: every gateway process asks for the same PostgreSQL advisory lock.
ADVISORY_LOCK_KEY = 0x6761_7465_7761_79  # "gateway"
# The tables `create_all` made before migrations: their presence without alembic_version means 0001.
UNSTAMPED_TABLES = frozenset({"calls", "transcript_segments", "policies", "claim_reports", "outbox"})
UNSTAMPED_REVISION = "0001"


class SchemaOutOfDate(RuntimeError):
    pass


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # the revision the database is at; None: no tables of ours
    head: str
    stamped: bool  # False for a database made before migrations (recognized by its tables)

    @property
    def word(self) -> str:
        if self.current is None:
            return "empty"
        if self.current == self.head:
            return "head"
        return "behind" if self.current in _known_revisions() else "unknown"

    def describe(self) -> str:
        """One line for `gateway db current`: revision id and where that is."""
        line = f"{self.current or '-'} {self.word}"
        return line if self.stamped or self.current is None else line + " (created before migrations, not stamped)"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}


def _state(connection: Connection) -> SchemaState:
    head = head_revision()
    current = MigrationContext.configure(connection).get_current_revision()
    if current is not None:
        return SchemaState(current, head, stamped=True)
    tables = set(inspect(connection).get_table_names())
    if UNSTAMPED_TABLES <= tables:
        return SchemaState(UNSTAMPED_REVISION, head, stamped=False)
    return SchemaState(None, head, stamped=False)


def _upgrade(connection: Connection) -> tuple[SchemaState, str]:
    before = _state(connection)
    if before.word == "unknown":  # written by a newer gateway: migrating "up" from it would guess
        raise SchemaOutOfDate(f"database schema is at {before.current}, which this gateway does not know "
                              f"(its newest is {before.head}); run the newer gateway or restore a backup")
    config = _config(connection)
    if not before.stamped and before.current is not None:
        log.info("database made before migrations: recognized as revision %s", before.current)
        command.stamp(config, before.current)
    if before.current != before.head:
        command.upgrade(config, "head")
    return before, _state(connection).current or ""


@contextlib.asynccontextmanager
async def _exclusive(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in an open transaction that no other migrator shares."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # Session-level: held across the transaction below; the second process waits here.
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            await conn.commit()
            try:
                await conn.begin()
                yield conn
            finally:
                await conn.rollback()  # no-op after a commit; clears a failed transaction
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
                await conn.commit()
        else:
            # SQLite: the write lock from the start, and DDL inside the transaction (pysqlite
            # would otherwise run each DDL statement on its own).
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            finally:
                await conn.rollback()


async def migrate(engine: AsyncEngine) -> tuple[SchemaState, str]:
    """Bring the schema to head; where it was when this process got the lock, and where it ends."""
    async with _exclusive(engine) as conn:
        before, after = await conn.run_sync(_upgrade)
        await conn.commit()
    if before.current != after or not before.stamped:
        log.info("database schema upgraded from %s to %s", before.current or "empty", after)
    return before, after


async def upgrade(engine: AsyncEngine) -> str:
    """Bring the schema to head (stamping a pre-migration database first); the revision it ends at."""
    return (await migrate(engine))[1]


async def state(engine: AsyncEngine) -> SchemaState:
    async with engine.connect() as conn:
        return await conn.run_sync(_state)


async def prepare(engine: AsyncEngine, *, auto_upgrade: bool) -> SchemaState:
    """At start: upgrade, or (auto_upgrade off) refuse a schema that is not at head."""
    if auto_upgrade:
        await upgrade(engine)
    found = await state(engine)
    if found.word != "head":
        raise SchemaOutOfDate(
            f"database schema is at {found.current or 'nothing'} ({found.word}), this gateway needs "
            f"{found.head}; run `gateway db upgrade` (db_auto_upgrade is off)"
        )
    return found
