"""A vosk-server client as alphacep's websocket/test.py is written (asyncio + websockets), our own words.

It connects to the server's root (`ws://host:port`), sends the config, then the WAV's
frames 8000 bytes at a time awaiting one reply each, then `{"eof" : 1}`, and prints
the final reply. Run as a script: `python vosk_server_client.py ws://127.0.0.1:2700 file.wav`.
"""

from __future__ import annotations

import asyncio
import sys
import wave

import websockets

CHUNK_BYTES = 8000


async def run_test(uri: str, path: str) -> list[str]:
    """Every reply the server sent, in order; the last is the final result."""
    replies: list[str] = []
    async with websockets.connect(uri) as websocket:
        with wave.open(path, "rb") as wf:
            await websocket.send('{ "config" : { "sample_rate" : %d } }' % wf.getframerate())
            frames_per_chunk = CHUNK_BYTES // (wf.getsampwidth() * wf.getnchannels())
            while True:
                data = wf.readframes(frames_per_chunk)
                if len(data) == 0:
                    break
                await websocket.send(data)
                replies.append(await websocket.recv())
        await websocket.send('{"eof" : 1}')
        replies.append(await websocket.recv())
        print(replies[-1])
    return replies


if __name__ == "__main__":
    asyncio.run(run_test(sys.argv[1], sys.argv[2]))
