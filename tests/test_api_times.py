"""Every time in an API response is ISO 8601 with an offset (UTC), whichever database stored it."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

import httpx
from websockets.asyncio.client import connect


def assert_utc_iso(value: str) -> None:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), value
    assert value.endswith("+00:00"), value


async def test_call_transcript_times_carry_their_offset(gateway):
    async with connect(f"ws://{gateway}/ws/call") as ws:
        await ws.send(json.dumps({"event": "start", "call_id": "times-1", "caller_number": "13800138000",
                                  "sample_rate": 8000}))
        await ws.send(bytes(1600))
        await ws.send(json.dumps({"event": "stop"}))
        async for _ in ws:
            pass
    async with httpx.AsyncClient() as client:
        for _ in range(100):  # the call's end is stored as the session closes
            body = (await client.get(f"http://{gateway}/api/calls/times-1/transcript")).json()
            if body.get("ended_at"):
                break
            await asyncio.sleep(0.05)
    assert_utc_iso(body["started_at"])
    assert_utc_iso(body["ended_at"])
