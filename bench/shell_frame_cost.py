#!/usr/bin/env python3
"""Event-loop cost of one 20 ms frame in the call shell (not a test; CI does not run it).

    .venv/bin/python bench/shell_frame_cost.py            # 20000 frames, best of 10 runs
    .venv/bin/python bench/shell_frame_cost.py --profile  # Python function calls per frame

A generic-protocol call of line silence goes through `CallSession` over a scripted
WebSocket; the speech service is a stand-in that never decodes (the voice gate drops
silence, so no frame makes a trip to the recognizer threads). What is left is the shell's
hot path: receive → adapter → audio input and gate → batching → the call core → reply.
To compare with an earlier version, run this file with that version's tree first on
PYTHONPATH. Wall times on a shared machine are noisy; the call count is not.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import tempfile
import time

from starlette.websockets import WebSocketState

from gateway.auth import Authenticator, Verdict
from gateway.calls.registry import CallRegistry
from gateway.calls.session import CallSession
from gateway.metrics import Metrics
from gateway.services import Services
from gateway.settings import load_settings
from gateway.storage.database import Database
from gateway.telephony.generic import GenericCallAdapter


class ScriptedSocket:
    """Hands out the scripted messages, then a disconnect; swallows what is sent."""

    def __init__(self, messages: list[dict]) -> None:
        self.messages = iter(messages)
        self.application_state = WebSocketState.CONNECTED

    async def accept(self) -> None: ...

    async def receive(self) -> dict:
        return next(self.messages, {"type": "websocket.disconnect"})

    async def send_text(self, text: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.application_state = WebSocketState.DISCONNECTED


class IdleRecognizer:
    phrases, words, max_alternatives, utterance_has_audio = None, True, 0, False
    decode_cpu_s = partial_cpu_s = 0.0
    sample_rate = 8000

    def close(self) -> None: ...


class StandInSpeech:
    def input_rate(self, rate: int) -> int:
        return rate

    def new_recognizer(self, *args: object, **kwargs: object) -> IdleRecognizer:
        return IdleRecognizer()

    async def run(self, fn, *args):
        return fn(*args)


async def calls(frames: int, runs: int) -> float:
    folder = tempfile.mkdtemp()
    settings = load_settings(environ={}).replace(data_dir=folder, idle_timeout_s=30.0, max_call_s=3600.0)
    database = Database.from_url(f"sqlite+aiosqlite:///{folder}/bench.db")
    await database.create_schema()
    services = Services(settings=settings, auth=Authenticator(frozenset()), registry=CallRegistry(4),
                        metrics=Metrics(), database=database, speech=StandInSpeech())  # type: ignore[arg-type]
    start = json.dumps({"event": "start", "call_id": "bench", "sample_rate": 8000})
    script = [{"type": "websocket.receive", "text": start}]
    script += [{"type": "websocket.receive", "bytes": bytes(320)}] * frames
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        session = CallSession(ScriptedSocket(script), GenericCallAdapter(), services, Verdict.ALLOWED)  # type: ignore[arg-type]
        await session.run()
        best = min(best, time.perf_counter() - began)
    await database.engine.dispose()
    return best


def profiled_calls(frames: int) -> int:
    profile = cProfile.Profile()
    profile.enable()
    asyncio.run(calls(frames, 1))
    profile.disable()
    return pstats.Stats(profile).total_calls  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="count Python function calls per frame instead")
    args = parser.parse_args()
    if args.profile:
        # The difference of two call lengths: set-up and the call's start and end cancel out.
        per_frame = (profiled_calls(3 * args.frames // 2) - profiled_calls(args.frames // 2)) / args.frames
        print(f"{per_frame:.1f} Python function calls per frame")
    else:
        best = asyncio.run(calls(args.frames, args.runs))
        print(f"{best / args.frames * 1e6:.1f} us of event loop per frame (best of {args.runs}, {args.frames} frames)")


if __name__ == "__main__":
    main()
