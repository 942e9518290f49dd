"""Running processes (gateways, schedulers) in the `instances` table: registered at start, a heartbeat
while they run, `stopped_at` when they stop.

Each process makes up an id of its own (a UUID) at start and writes it on what it owns (calls,
flow results). A process is alive while its row has a recent heartbeat and no `stopped_at`;
`owner_alive` says so in SQL, so that recovery (gateway/storage/recovery.py) can tell a dead
process's rows from a live peer's in the statement that closes them. Times are passed in: the
processes' clocks must agree to well within `instance_dead_after_s` (NTP does).

Rows of processes stopped or dead for longer than `instance_retention_days` are pruned (`prune`,
on a gateway's heartbeat): what they owned was recovered long before, and an owner that is no
longer in the table counts as dead, as it did while its row was there.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.storage.database import instances


@dataclass(frozen=True)
class Instance:
    """This process as the `instances` table knows it."""

    instance_id: str
    role: str  # "gateway", "scheduler"
    hostname: str
    pid: int

    @classmethod
    def new(cls, role: str) -> "Instance":
        return cls(str(uuid.uuid4()), role, socket.gethostname(), os.getpid())


async def register(engine: AsyncEngine, instance: Instance, now: datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(instances).values(instance_id=instance.instance_id, role=instance.role, hostname=instance.hostname,
                                     pid=instance.pid, started_at=now, heartbeat_at=now)
        )


async def heartbeat(engine: AsyncEngine, instance_id: str, now: datetime) -> bool:
    """Say this process still runs; False when its row is gone or marked stopped (it is taken for dead)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            update(instances).where(instances.c.instance_id == instance_id, instances.c.stopped_at.is_(None))
            .values(heartbeat_at=now)
        )
    return result.rowcount == 1


async def stop(engine: AsyncEngine, instance_id: str, now: datetime) -> None:
    """The process stops: from now on it is dead to its peers (whatever it left open is theirs to close)."""
    async with engine.begin() as conn:
        await conn.execute(
            update(instances).where(instances.c.instance_id == instance_id).values(stopped_at=now, heartbeat_at=now)
        )


async def prune(engine: AsyncEngine, now: datetime, older_than_s: float) -> int:
    """Forget the processes whose last sign of life (a heartbeat, or their stop, which sets it too)
    is older than `older_than_s`; how many. A live process's row is never that old."""
    async with engine.begin() as conn:
        result = await conn.execute(delete(instances).where(instances.c.heartbeat_at < now - timedelta(seconds=older_than_s)))
    return result.rowcount


def alive(now: datetime, dead_after_s: float) -> ColumnElement[bool]:
    """An `instances` row of a live process: not stopped, heartbeat within `dead_after_s`."""
    return and_(instances.c.stopped_at.is_(None), instances.c.heartbeat_at >= now - timedelta(seconds=dead_after_s))


def owner_alive(owner: ColumnElement, now: datetime, dead_after_s: float) -> ColumnElement[bool]:
    """SQL: the process named in `owner` (an instance_id column) is alive. NULL or unknown: dead."""
    return exists(select(instances.c.instance_id).where(instances.c.instance_id == owner, alive(now, dead_after_s)))


async def get(engine: AsyncEngine, instance_id: str) -> dict | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(instances).where(instances.c.instance_id == instance_id))).mappings().first()
    return dict(row) if row else None
