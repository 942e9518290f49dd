"""The WebSocket protocol `gateway serve` runs: a burst of messages is buffered, none is lost."""

from __future__ import annotations

import asyncio

import httpx
from websockets.asyncio.client import connect

from calls import AUDIO, load_pcm, to_rate, twilio_messages, wait_for_transcript
from conftest import running_gateway


async def test_an_unpaced_burst_of_media_is_received_whole_and_transcribed(make_settings):
    pcm, rate = load_pcm(AUDIO / "real" / "fireredasr2s_hello_zh.wav")
    pcm8k = to_rate(pcm, rate, 8000)
    messages = twilio_messages(pcm8k * 3, "CA" + "5" * 32)  # ~9 s of audio, far past the read buffer
    with running_gateway(make_settings()) as address:
        async with connect(f"ws://{address}/ws/twilio") as ws:
            for message in messages:  # as fast as the socket takes them: reading must pause, not drop
                await ws.send(message)
            await asyncio.wait_for(ws.wait_closed(), 60)
        stored = await wait_for_transcript(address, "CA" + "5" * 32)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://{address}/metrics")).text
    audio_in = float(next(l for l in metrics.splitlines() if l.startswith("gateway_audio_seconds_in_total")).split()[1])
    assert abs(audio_in - 3 * len(pcm8k) / 2 / 8000) < 0.02
    assert "".join(s["text"] for s in stored["segments"]).count("好") >= 2
