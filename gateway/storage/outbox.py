"""The delivery outbox: rows queued by producers in their own transaction, POSTed as signed webhooks.

A producer (gateway/storage/results.py for flow results) calls `enqueue` inside the
transaction of the change a delivery carries, so the change and its delivery are
stored together or not at all, once per (topic, aggregate id). The worker leases
due rows of the topics that have a route (URL, secret, backoff), POSTs them and
marks them delivered; failures back off exponentially. Rows of a topic without a
route wait, said once in the log. Receivers deduplicate on the `X-Gateway-Delivery`
id (a UUID per row, unique across databases, gateways and restored backups): a crash between their 2xx and our bookkeeping is the one case that repeats a POST.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

import httpx
from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.storage.database import outbox, utcnow

log = logging.getLogger(__name__)

LEASE_S = 60
MAX_BACKOFF_S = 3600
UNROUTED_CHECK_S = 60.0


@dataclass(frozen=True)
class Route:
    """Where one topic's deliveries go."""

    url: str
    secret: str
    backoff_s: float = 2.0  # first retry delay; doubles per attempt, at most MAX_BACKOFF_S


async def enqueue(conn: AsyncConnection, *, topic: str, aggregate_id: str, payload: dict[str, Any]) -> bool:
    """Queue a delivery in the caller's transaction; False when (topic, aggregate_id) is already queued."""
    now = utcnow()
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    result = await conn.execute(
        dialect_insert(outbox)
        .values(delivery_id=str(uuid.uuid4()), topic=topic, aggregate_id=aggregate_id, payload=payload, created_at=now, attempts=0, next_attempt_at=now)
        .on_conflict_do_nothing(index_elements=["topic", "aggregate_id"])
    )
    return result.rowcount == 1


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", hex: what the receiver recomputes."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature.removeprefix("sha256="))


def backoff(attempts: int, base_s: float) -> float:
    return min(base_s * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S)


class OutboxWorker:
    """Delivers due rows of every routed topic; one per gateway process, several may share a database."""

    def __init__(self, engine: AsyncEngine, routes: Mapping[str, Route], *, poll_s: float = 1.0,
                 timeout_s: float = 10.0, unrouted_check_s: float = UNROUTED_CHECK_S) -> None:
        self.engine = engine
        self.routes = dict(routes)
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.unrouted_check_s = unrouted_check_s
        self.wake = asyncio.Event()  # set when a delivery was queued, so it doesn't wait for the poll
        self._warned: set[str] = set()  # topics without a route already named in the log

    async def run(self) -> None:
        next_check = 0.0
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            while True:
                try:
                    if time.monotonic() >= next_check:
                        next_check = time.monotonic() + self.unrouted_check_s
                        await self.warn_unrouted()
                    delivered_any = await self.deliver_due(client)
                except Exception:  # a database hiccup must not end delivery for good
                    log.exception("outbox pass failed")
                    delivered_any = False
                if not delivered_any:
                    self.wake.clear()
                    try:
                        await asyncio.wait_for(self.wake.wait(), self.poll_s)
                    except TimeoutError:
                        pass

    async def warn_unrouted(self) -> list[str]:
        """Name, once per topic, the topics whose deliveries wait for want of a route."""
        query = select(outbox.c.topic).where(outbox.c.delivered_at.is_(None)).distinct()
        if self.routes:
            query = query.where(outbox.c.topic.not_in(list(self.routes)))
        async with self.engine.connect() as conn:
            topics = sorted(set((await conn.execute(query)).scalars().all()) - self._warned)
        for topic in topics:
            log.warning("outbox topic %r has no webhook route: its deliveries wait (see [webhooks] in settings)", topic)
        self._warned.update(topics)
        return topics

    def _due(self, now: datetime) -> ColumnElement[bool]:
        return and_(
            outbox.c.topic.in_(list(self.routes)),
            outbox.c.delivered_at.is_(None),
            outbox.c.next_attempt_at <= now,
            or_(outbox.c.leased_until.is_(None), outbox.c.leased_until < now),
        )

    async def _lease(self, limit: int = 20) -> list[dict[str, Any]]:
        if not self.routes:
            return []
        now = utcnow()
        until = now + timedelta(seconds=LEASE_S)
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Rows another process is leasing right now are skipped, not waited for.
                leased = (
                    await conn.execute(
                        select(outbox.c.id).where(self._due(now)).order_by(outbox.c.id).limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                ).scalars().all()
                if leased:
                    await conn.execute(update(outbox).where(outbox.c.id.in_(leased)).values(leased_until=until))
            else:
                due = (
                    await conn.execute(select(outbox.c.id).where(self._due(now)).order_by(outbox.c.id).limit(limit))
                ).scalars().all()
                leased = []
                for row_id in due:
                    # Compare-and-set: another worker (another gateway process) may lease it first.
                    result = await conn.execute(
                        update(outbox).where(outbox.c.id == row_id, self._due(now)).values(leased_until=until)
                    )
                    if result.rowcount == 1:
                        leased.append(row_id)
            if not leased:
                return []
            rows = (await conn.execute(select(outbox).where(outbox.c.id.in_(leased)).order_by(outbox.c.id))).mappings().all()
            return [dict(r) for r in rows]

    async def deliver_due(self, client: httpx.AsyncClient) -> bool:
        rows = await self._lease()
        for row in rows:
            await self._deliver(client, row)
        return bool(rows)

    async def _deliver(self, client: httpx.AsyncClient, row: dict[str, Any]) -> None:
        route = self.routes[row["topic"]]
        body = json.dumps(row["payload"], ensure_ascii=False, sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Gateway-Delivery": row["delivery_id"],
            "X-Gateway-Event": row["topic"],
            "X-Gateway-Timestamp": timestamp,
            "X-Gateway-Signature": "sha256=" + sign(route.secret, timestamp, body),
        }
        error: str | None = None
        try:
            response = await client.post(route.url, content=body, headers=headers)
            if not 200 <= response.status_code < 300:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempts = row["attempts"] + 1
        async with self.engine.begin() as conn:
            if error is None:
                await conn.execute(
                    update(outbox).where(outbox.c.id == row["id"])
                    .values(delivered_at=utcnow(), attempts=attempts, leased_until=None, last_error=None)
                )
                log.info("delivered %s %s (delivery %s, attempt %d)", row["topic"], row["aggregate_id"], row["delivery_id"],
                         attempts)
            else:
                delay = backoff(attempts, route.backoff_s)
                await conn.execute(
                    update(outbox).where(outbox.c.id == row["id"])
                    .values(attempts=attempts, leased_until=None, last_error=error,
                            next_attempt_at=utcnow() + timedelta(seconds=delay))
                )
                log.warning("delivery %s of %s %s failed (%s); retry in %.0f s",
                            row["delivery_id"], row["topic"], row["aggregate_id"], error, delay)


async def pending(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every outbox row, delivered or not, oldest first."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox).order_by(outbox.c.id))).mappings().all()
    return [dict(r) for r in rows]
