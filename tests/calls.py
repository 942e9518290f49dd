"""Client-side helpers: stream audio to a running gateway like a telephony platform would."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from speech.codecs import Encoding, decode, ulaw_encode
from speech.resample import StreamResampler
from speech.wavfile import read_wav

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR", ROOT.parent / "shared"))
AUDIO = SHARED / "audio"


def load_pcm(path: Path) -> tuple[bytes, int]:
    """A WAV file as 16-bit PCM at its own rate."""
    encoding, rate, channels, payload = read_wav(path)
    assert channels == 1
    return decode(encoding, payload), rate


def frames(pcm: bytes, rate: int, ms: int = 20) -> list[bytes]:
    step = rate * 2 * ms // 1000
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def silence(seconds: float, rate: int) -> bytes:
    return bytes(int(seconds * rate) * 2)


def manifest(folder: Path) -> list[dict[str, str]]:
    lines = (folder / "manifest.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:] if line.strip()]


async def generic_call(address: str, pcm: bytes, rate: int, call_id: str, *, pace: float = 0.0,
                       headers: dict | None = None) -> list[dict]:
    """Stream over /ws/call and return every JSON event the gateway sent until it closed."""
    received: list[dict] = []
    async with connect(f"ws://{address}/ws/call", additional_headers=headers or {}) as ws:
        await ws.send(json.dumps({"event": "start", "call_id": call_id, "caller_number": "13800138000",
                                  "sample_rate": rate}))

        async def read() -> None:
            async for message in ws:
                received.append(json.loads(message))

        reader = asyncio.create_task(read())
        for frame in frames(pcm + silence(1.0, rate), rate):
            await ws.send(frame)
            if pace:
                await asyncio.sleep(pace)
        await ws.send(json.dumps({"event": "stop"}))
        await asyncio.wait_for(reader, 60)
    return received


async def vosk_call(address: str, pcm: bytes, rate: int, chunk_ms: int = 250) -> list[dict]:
    """A vosk-server client: config, audio chunks, eof; one reply awaited per message."""
    replies = []
    async with connect(f"ws://{address}/ws/asr") as ws:
        await ws.send(json.dumps({"config": {"sample_rate": rate, "words": 1}}))
        for chunk in frames(pcm, rate, chunk_ms):
            await ws.send(chunk)
            replies.append(json.loads(await ws.recv()))
        await ws.send('{"eof" : 1}')
        replies.append(json.loads(await ws.recv()))
    return replies


def twilio_messages(pcm8k: bytes, call_sid: str, params: dict[str, str] | None = None) -> list[str]:
    """The messages Twilio Media Streams sends for a call whose inbound audio is `pcm8k`."""
    stream_sid = "MZ" + call_sid[2:]
    out = [json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
           json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
                       "start": {"accountSid": "AC" + "0" * 32, "streamSid": stream_sid, "callSid": call_sid,
                                 "tracks": ["inbound"], "customParameters": params or {},
                                 "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})]
    for i, frame in enumerate(frames(pcm8k, 8000), start=1):
        out.append(json.dumps({"event": "media", "sequenceNumber": str(i + 1), "streamSid": stream_sid,
                               "media": {"track": "inbound", "chunk": str(i), "timestamp": str(i * 20),
                                         "payload": base64.b64encode(ulaw_encode(frame)).decode()}}))
    out.append(json.dumps({"event": "stop", "sequenceNumber": str(len(out) + 1), "streamSid": stream_sid,
                           "stop": {"accountSid": "AC" + "0" * 32, "callSid": call_sid}}))
    return out


def to_rate(pcm: bytes, rate: int, target: int) -> bytes:
    if rate == target:
        return pcm
    resampler = StreamResampler(rate, target)
    return resampler.process(pcm) + resampler.flush()


async def transcript(address: str, call_id: str, headers: dict | None = None) -> dict:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{address}/api/calls/{call_id}/transcript", headers=headers or {})
        response.raise_for_status()
        return response.json()


async def wait_for_transcript(address: str, call_id: str, timeout: float = 10.0) -> dict:
    """The stored call once it has ended (the server finishes a call after the socket closes)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            stored = await transcript(address, call_id)
            if stored["ended_at"]:
                return stored
        except httpx.HTTPStatusError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"call {call_id} was not stored as ended")
        await asyncio.sleep(0.05)
