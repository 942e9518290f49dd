"""The ReceiptSink the provider webhooks hand receipts and replies to.

A receipt finds its row by our delivery id (when the provider echoes it: OutId,
SessionContext, ...) or by the provider's id; it is recorded under a key (provider, id,
status) first, so a replayed receipt finds the key and changes nothing. What it changes is
decided by scheduler.lifecycle.after_receipt (a failure escalates to the step's next channel;
a voice outcome `refused` puts the number on the do-not-call list). Replies are read for
opt-outs (scheduler.optout).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable, Mapping, Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.privacy import mask_number
from gateway.storage.database import reminders, utcnow
from scheduler import store
from scheduler.campaigns import Campaign, Step
from scheduler.channels.base import Receipt, Reply
from scheduler.lifecycle import after_receipt
from scheduler.optout import OptOut, sms_opt_out, voice_opt_out, wechat_opt_out

log = logging.getLogger(__name__)


def step_of(campaigns: Mapping[str, Campaign], row: Mapping[str, object]) -> Step | None:
    campaign = campaigns.get(str(row["campaign"]))
    try:
        return campaign.step(str(row["step"])) if campaign else None
    except KeyError:
        return None


class ReminderSink:
    def __init__(self, engine: AsyncEngine, campaigns: Mapping[str, Campaign], escalate: store.Escalate,
                 clock: Callable[[], datetime] = utcnow, on_status: Callable[[dict, str], None] | None = None) -> None:
        self.engine = engine
        self.campaigns = campaigns
        self.escalate = escalate
        self.clock = clock
        self.on_status = on_status  # metrics: (row, new status)

    async def receipts(self, items: Sequence[Receipt]) -> None:
        for receipt in items:
            await self._receipt(receipt)

    async def _receipt(self, receipt: Receipt) -> None:
        now = self.clock()
        ref = receipt.provider_id or receipt.delivery_id or "-"
        key = f"{receipt.provider}|{ref}|{receipt.status}"
        async with store.write_transaction(self.engine) as conn:
            row = await store.find_for_receipt(conn, receipt.provider, receipt.provider_id, receipt.delivery_id)
            if row is not None and conn.dialect.name == "postgresql":
                # Against the dispatcher's accepted update of the same row.
                locked = (await conn.execute(select(reminders).where(reminders.c.id == row["id"]).with_for_update())).first()
                row = store.row_dict(locked) if locked else row
            fresh = await store.record_receipt(conn, key, row["id"] if row else None, {
                "provider": receipt.provider, "provider_id": receipt.provider_id, "delivery_id": receipt.delivery_id,
                "status": receipt.status, "outcome": receipt.outcome, "error": receipt.error,
                "at": receipt.at, "received_at": now})
            if not fresh:
                return  # a replay: already applied
            if row is None:
                log.info("receipt %s from %s for no reminder of ours (kept)", receipt.status, receipt.provider)
                return
            change = after_receipt(row["status"], row["escalate_at"], step_of(self.campaigns, row), receipt, now)
            if change is None:
                return
            if change.values:
                await conn.execute(update(reminders).where(reminders.c.id == row["id"])
                                   .values(**store.utc_values(change.values), updated_at=now))
            await store.add_events(conn, [(row["id"], str(change.values.get("status", row["status"])), change.event)], now)
            if change.escalate:
                await store.escalate_rows(conn, [row], now, self.escalate)
            if change.opt_out:
                opt = voice_opt_out(row["recipient"], receipt.outcome)
                if opt:
                    await store.add_opt_out(conn, opt, now)
                    log.info("%s put on the do-not-call list (call outcome refused)", mask_number(row["recipient"]))
        if self.on_status and "status" in change.values:
            self.on_status(row, str(change.values["status"]))

    async def replies(self, items: Sequence[Reply]) -> None:
        now = self.clock()
        async with store.write_transaction(self.engine) as conn:
            for reply in items:
                opt: OptOut | None = wechat_opt_out(reply.sender, reply.event) if reply.event else \
                    sms_opt_out(reply.sender, reply.text)
                if opt and await store.add_opt_out(conn, opt, now):
                    log.info("%s opted out of %s (%s)", mask_number(opt.recipient), opt.channel, opt.source)

    async def opt_out(self, opt: OptOut) -> bool:
        async with store.write_transaction(self.engine) as conn:
            return await store.add_opt_out(conn, opt, self.clock())
