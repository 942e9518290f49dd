"""Concurrent calls on loopback: every call gets its transcript, none disturbs another.

Bounded: a fixed number of calls with a fixed amount of audio each, and a deadline.
"""

from __future__ import annotations

import asyncio
import json

import httpx

from calls import AUDIO, frames, generic_call, load_pcm, silence, to_rate, twilio_messages, wait_for_transcript
from conftest import running_gateway

CALLS = 8
DEADLINE_S = 120


async def twilio_call(address: str, pcm8k: bytes, call_sid: str) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://{address}/ws/twilio") as ws:
        for message in twilio_messages(pcm8k + silence(1.0, 8000), call_sid):
            await ws.send(message)
            if '"media"' in message:
                await asyncio.sleep(0.02)  # real time
        async for _ in ws:
            pass


async def test_concurrent_calls_all_transcribed(make_settings):
    pcm, rate = load_pcm(AUDIO / "real" / "fireredasr2s_hello_zh.wav")
    pcm8k = to_rate(pcm, rate, 8000)
    with running_gateway(make_settings(max_calls=CALLS)) as address:
        jobs = []
        for n in range(CALLS):
            if n % 2:
                jobs.append(twilio_call(address, pcm8k, f"CA{n:032d}"))
            else:
                jobs.append(generic_call(address, pcm, rate, f"load-{n}", pace=0.02))
        results = await asyncio.wait_for(asyncio.gather(*jobs), DEADLINE_S)
        for n, events in enumerate(results):
            call_id = f"CA{n:032d}" if n % 2 else f"load-{n}"
            stored = await wait_for_transcript(address, call_id)
            assert "".join(s["text"] for s in stored["segments"]).startswith("你好"), (call_id, stored)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://{address}/metrics")).text
            health = (await client.get(f"http://{address}/healthz")).json()
        assert health["active_calls"] == 0
        assert "gateway_calls_refused_total 0" in metrics
        assert "gateway_protocol_errors_total 0" in metrics
        total_in = float(next(l for l in metrics.splitlines() if l.startswith("gateway_audio_seconds_in_total")).split()[1])
        expected = CALLS * (len(pcm) / 2 / rate + 1.0)
        assert abs(total_in - expected) < 0.1 * CALLS  # no audio dropped
