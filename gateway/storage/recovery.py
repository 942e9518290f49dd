"""What a process left open when it died or stopped: its calls ended, its flow results final and delivered.

A gateway writes its instance id (gateway/storage/instances.py) on every call and flow result
it starts. When it dies (kill -9, a crash, the host gone), its calls keep no `ended_at` and its
results stay `in_progress`. Recovery closes them: a call ends with the reason given
(`process died`, or `shutdown` for a process closing its own), a result becomes `partial` with
what it holds (slots, details, transcript, saved after every caller turn) and its delivery is
queued in the outbox in the same transaction, as every final result's is.

Whose rows: `at_start` — on SQLite (one node) every open row not this process's; on PostgreSQL
those of dead processes (no recent heartbeat, or stopped) and rows with no owner (from before
migration 0004). `dead_peers` — periodically, those of dead processes, on either database.
`own` — this process's, at its shutdown. A live peer's rows are never touched.

Exactly once: rows are taken `FOR UPDATE SKIP LOCKED` on PostgreSQL (two recoverers at once
split them, never wait on each other or deadlock) and closed only while still open
(`ended_at IS NULL`), in the transaction that queues their delivery; the outbox is unique per
(topic, result) besides.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlalchemy import ColumnElement, Table, and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.storage import instances, reports
from gateway.storage.database import calls, flow_results, utcnow
from gateway.storage.instances import Instance
from gateway.storage.outbox import enqueue

log = logging.getLogger(__name__)

PROCESS_DIED = "process died"  # the end reason of a call whose gateway process died
SHUTDOWN = "shutdown"  # ... of a call still open when its gateway stopped
RECOVERED_STATUS = "partial"  # every flow has it (speech.dialogue.flow.BUILTIN_OUTCOMES)

# Which rows, by their owner column: a condition on it.
Owners = Callable[[ColumnElement], ColumnElement[bool]]


@dataclass(frozen=True)
class Recovered:
    calls: int = 0
    results: int = 0
    queued: int = 0  # deliveries queued (a result already queued is not queued twice)

    def __add__(self, other: "Recovered") -> "Recovered":
        return Recovered(self.calls + other.calls, self.results + other.results, self.queued + other.queued)

    def __bool__(self) -> bool:
        return bool(self.calls or self.results)


def dead_owners(me: str, now: datetime, dead_after_s: float) -> Owners:
    """Rows of processes other than `me` that are dead at `now`; no owner counts as dead."""
    return lambda owner: and_(or_(owner.is_(None), owner != me),
                              ~instances.owner_alive(owner, now, dead_after_s))


def not_mine(me: str) -> Owners:
    return lambda owner: or_(owner.is_(None), owner != me)


def mine(me: str) -> Owners:
    return lambda owner: owner == me


async def at_start(engine: AsyncEngine, me: str, now: datetime, dead_after_s: float) -> Recovered:
    """At a process's start: on SQLite every open row not `me`'s, on PostgreSQL those of dead processes."""
    owners = not_mine(me) if engine.dialect.name == "sqlite" else dead_owners(me, now, dead_after_s)
    return await close_open(engine, owners, now, PROCESS_DIED)


async def dead_peers(engine: AsyncEngine, me: str, now: datetime, dead_after_s: float) -> Recovered:
    """Periodically: the open rows of processes whose heartbeat expired (or that stopped) by `now`."""
    return await close_open(engine, dead_owners(me, now, dead_after_s), now, PROCESS_DIED)


async def own(engine: AsyncEngine, me: str, now: datetime, reason: str = SHUTDOWN) -> Recovered:
    """At a process's stop: whatever of its own is still open (a call its drain could not end)."""
    return await close_open(engine, mine(me), now, reason)


async def close_open(engine: AsyncEngine, owners: Owners, now: datetime, reason: str) -> Recovered:
    """End the open calls and finalize the open results of these owners; queue the results' deliveries."""
    async with engine.begin() as conn:
        ended = 0
        taken = await _take(conn, calls, calls.c.id, owners(calls.c.instance_id))
        if taken:
            ended = (await conn.execute(
                update(calls).where(calls.c.id.in_(taken), calls.c.ended_at.is_(None))
                .values(ended_at=now, end_reason=reason)
            )).rowcount
        taken = await _take(conn, flow_results, flow_results.c.id, owners(flow_results.c.instance_id))
        results = queued = 0
        for result_id in taken:
            done = await conn.execute(
                update(flow_results).where(flow_results.c.id == result_id, flow_results.c.ended_at.is_(None))
                .values(status=RECOVERED_STATUS, ended_at=now, updated_at=now)
            )
            if done.rowcount != 1:
                continue
            results += 1
            row = dict((await conn.execute(select(flow_results).where(flow_results.c.id == result_id))).mappings().one())
            delivery = reports.delivery_for(row["topic"])  # claim reports keep their own body
            queued += await enqueue(conn, topic=delivery.topic, aggregate_id=result_id,
                                    payload=delivery.payload(row, now))
    return Recovered(ended, results, queued)


async def _take(conn: AsyncConnection, table: Table, key: ColumnElement, owned: ColumnElement[bool]) -> list:
    """The open rows of `table` these owners hold, locked for this transaction (PostgreSQL skips rows
    another recoverer holds: they are being closed already)."""
    query = select(key).where(table.c.ended_at.is_(None), owned).order_by(key)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=table)
    return list((await conn.execute(query)).scalars().all())


class Keeper:
    """This process's row in `instances`: registered (and what dead processes left, recovered) at start,
    a heartbeat with a look for dead peers every `heartbeat_s`, stopped (its own open rows closed) at the end.

    The loop is the only I/O here that waits; every decision is in the functions above, at the time given."""

    def __init__(self, engine: AsyncEngine, instance: Instance, *, heartbeat_s: float, dead_after_s: float,
                 retention_s: float = 0.0, on_queued: Callable[[], None] | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        """`retention_s`: rows of processes stopped or dead this long are pruned on each beat (0: kept)."""
        self.engine = engine
        self.instance = instance
        self.heartbeat_s = heartbeat_s
        self.dead_after_s = dead_after_s
        self.retention_s = retention_s
        self.on_queued = on_queued  # a delivery was queued: wake the outbox worker
        self.clock = clock

    @property
    def instance_id(self) -> str:
        return self.instance.instance_id

    async def start(self) -> Recovered:
        now = self.clock()
        await instances.register(self.engine, self.instance, now)
        return self._report(await at_start(self.engine, self.instance_id, now, self.dead_after_s), "at start")

    async def beat(self) -> Recovered:
        now = self.clock()
        if not await instances.heartbeat(self.engine, self.instance_id, now):
            log.error("instance %s: its row is gone or marked stopped while it runs; registering again "
                      "(its open calls may have been recovered by a peer)", self.instance_id)
            try:
                await instances.register(self.engine, self.instance, now)
            except IntegrityError:  # the row is there, stopped: it stays so, and the calls stay ours
                pass
        recovered = self._report(await dead_peers(self.engine, self.instance_id, now, self.dead_after_s),
                                 "from dead peers")
        if self.retention_s:  # after recovery: a row goes only once what its process left is closed
            pruned = await instances.prune(self.engine, now, self.retention_s)
            if pruned:
                log.info("pruned %d instances rows stopped or dead for over %g days", pruned, self.retention_s / 86400)
        return recovered

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self.beat()
            except Exception:  # a database hiccup must not end the heartbeat for good
                log.exception("instance %s: heartbeat failed", self.instance_id)

    async def stop(self) -> Recovered:
        now = self.clock()
        recovered = self._report(await own(self.engine, self.instance_id, now), "still open at shutdown")
        await instances.stop(self.engine, self.instance_id, now)
        return recovered

    def _report(self, recovered: Recovered, when: str) -> Recovered:
        if recovered:
            log.warning("closed %d calls and %d flow results %s (results %s, %d deliveries queued)",
                        recovered.calls, recovered.results, when, RECOVERED_STATUS, recovered.queued)
        if recovered.queued and self.on_queued is not None:
            self.on_queued()
        return recovered
