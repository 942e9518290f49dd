"""Delivers stored claim reports to the claims system: signed webhooks from a durable outbox.

Each delivery row is written with its report (gateway/storage/reports.py). The worker
leases due rows, POSTs them, and marks them delivered; failures back off
exponentially. Receivers deduplicate on the `X-Gateway-Delivery` id: a crash
between their 2xx and our bookkeeping is the one case that repeats a POST.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.storage.database import outbox, utcnow

log = logging.getLogger(__name__)

LEASE_S = 60
MAX_BACKOFF_S = 3600


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", hex: what the receiver recomputes."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature.removeprefix("sha256="))


def backoff(attempts: int, base_s: float) -> float:
    return min(base_s * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S)


class OutboxWorker:
    def __init__(self, engine: AsyncEngine, url: str, secret: str, *, base_backoff_s: float = 2.0,
                 poll_s: float = 1.0, timeout_s: float = 10.0) -> None:
        self.engine = engine
        self.url = url
        self.secret = secret
        self.base_backoff_s = base_backoff_s
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.wake = asyncio.Event()  # set when a report was queued, so delivery doesn't wait for the poll

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            while True:
                try:
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

    async def _lease(self, limit: int = 20) -> list[dict[str, Any]]:
        now = utcnow()
        async with self.engine.begin() as conn:
            due = (
                await conn.execute(
                    select(outbox.c.id)
                    .where(
                        outbox.c.delivered_at.is_(None),
                        outbox.c.next_attempt_at <= now,
                        or_(outbox.c.leased_until.is_(None), outbox.c.leased_until < now),
                    )
                    .order_by(outbox.c.id)
                    .limit(limit)
                )
            ).scalars().all()
            leased = []
            for row_id in due:
                # Compare-and-set: another worker (another gateway process) may lease it first.
                result = await conn.execute(
                    update(outbox)
                    .where(and_(outbox.c.id == row_id, or_(outbox.c.leased_until.is_(None), outbox.c.leased_until < now)))
                    .values(leased_until=now + timedelta(seconds=LEASE_S))
                )
                if result.rowcount == 1:
                    leased.append(row_id)
            if not leased:
                return []
            rows = (await conn.execute(select(outbox).where(outbox.c.id.in_(leased)))).mappings().all()
            return [dict(r) for r in rows]

    async def deliver_due(self, client: httpx.AsyncClient) -> bool:
        rows = await self._lease()
        for row in rows:
            await self._deliver(client, row)
        return bool(rows)

    async def _deliver(self, client: httpx.AsyncClient, row: dict[str, Any]) -> None:
        body = json.dumps(row["payload"], ensure_ascii=False, sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Gateway-Delivery": str(row["id"]),
            "X-Gateway-Event": row["event"],
            "X-Gateway-Timestamp": timestamp,
            "X-Gateway-Signature": "sha256=" + sign(self.secret, timestamp, body),
        }
        error: str | None = None
        try:
            response = await client.post(self.url, content=body, headers=headers)
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
                log.info("delivered report %s (delivery %s, attempt %d)", row["report_id"], row["id"], attempts)
            else:
                delay = backoff(attempts, self.base_backoff_s)
                await conn.execute(
                    update(outbox).where(outbox.c.id == row["id"])
                    .values(attempts=attempts, leased_until=None, last_error=error,
                            next_attempt_at=utcnow() + timedelta(seconds=delay))
                )
                log.warning("delivery %s of report %s failed (%s); retry in %.0f s", row["id"], row["report_id"], error, delay)


async def pending(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox).order_by(outbox.c.id))).mappings().all()
    return [dict(r) for r in rows]
