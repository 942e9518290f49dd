"""Live calls: capacity, the registry of active calls, event subscribers, and the drain at shutdown.

Capacity counts the calls in progress, exactly: a call takes its slot when it is admitted and
gives it back (`release`) when its connection is over — before the gateway's close frame goes
out, or once the audio of a peer that hung up is recognized. What follows (storing the call's
end, the `call.ended` event, freeing its recognizer) holds no slot, so a peer that sees its call
closed may start the next one at once. The registry still tracks the call until `close`: the
drain waits for that, so nothing of a call is lost at shutdown.

The drain (`drain`, on SIGTERM): new calls are refused from then on, the calls in progress go on
until they end or the deadline passes, then each remaining one is asked to end (`LiveCall.end`:
its session ends it as the gateway ending it, reason `shutdown`, with what was said flushed and
stored) and given a few seconds to do so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

SHUTDOWN = "shutdown"
END_GRACE_S = 3.0  # after the drain's deadline: how long ended calls get to flush and store

log = logging.getLogger(__name__)


@dataclass
class LiveCall:
    """What the rest of the gateway may see of a call in progress."""

    key: int
    protocol: str
    call_id: str | None = None
    opened: float = field(default_factory=time.monotonic)
    first_audio: float | None = None
    audio_seconds_processed: float = 0.0
    waiting: bool = False  # the call's loop waits for the peer: nothing of it is queued
    ending: str | None = None  # the gateway wants the call ended, and why ("shutdown")
    wait: asyncio.Timeout | None = None  # the call's wait for the peer, cut short by `end`
    holds_slot: bool = True  # counted against max_calls (until `CallRegistry.release`)

    def end(self, reason: str) -> None:
        """Ask the call's session to end the call now, with this reason."""
        self.ending = reason
        if self.wait is not None and not self.wait.expired():
            try:
                self.wait.reschedule(asyncio.get_running_loop().time())
            except RuntimeError:
                pass  # that wait is over: the session sees `ending` before it waits again

    def decode_lag(self, now: float) -> float:
        """How far recognition is behind the call's real-time audio."""
        if self.first_audio is None or self.waiting:
            return 0.0
        return max(0.0, (now - self.first_audio) - self.audio_seconds_processed)

    def caught_up(self, now: float) -> None:
        """Nothing was queued: whatever the peer sent is processed. Pauses in its sending
        (chat calls, platforms that stop streaming in silence) must not read as lag."""
        if self.first_audio is not None:
            self.first_audio = now - self.audio_seconds_processed


class Subscriber:
    """One events WebSocket or webhook; a bounded queue so a slow one cannot hold up calls."""

    def __init__(self, call_id: str | None, maxsize: int = 1000) -> None:
        self.call_id = call_id
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, event: dict[str, Any]) -> None:
        if self.call_id is not None and event.get("call_id") != self.call_id:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1


class CallRegistry:
    def __init__(self, max_calls: int) -> None:
        self.max_calls = max_calls
        self._calls: dict[int, LiveCall] = {}  # until `close`: the drain waits for these
        self._slots = 0  # calls of them holding a slot (in progress; until `release`)
        self._next_key = 0
        self._subscribers: set[Subscriber] = set()
        self.draining = False  # shutting down: no new call is taken
        self._idle = asyncio.Event()  # set whenever no call is open
        self._idle.set()

    @property
    def active(self) -> int:
        """Calls in progress: those holding a slot."""
        return self._slots

    def open(self, protocol: str) -> LiveCall | None:
        """Reserve a place for a call, or None when the gateway is at capacity (or draining)."""
        if self._slots >= self.max_calls or self.draining:
            return None
        self._idle.clear()
        self._next_key += 1
        call = LiveCall(key=self._next_key, protocol=protocol)
        self._calls[call.key] = call
        self._slots += 1
        return call

    def release(self, call: LiveCall) -> None:
        """The call's connection is over: its slot is free for the next call (once)."""
        if call.holds_slot and call.key in self._calls:
            call.holds_slot = False
            self._slots -= 1

    def close(self, call: LiveCall) -> None:
        """The call is over and stored: the registry forgets it."""
        self.release(call)
        self._calls.pop(call.key, None)
        if not self._calls:
            self._idle.set()

    async def drain(self, deadline_s: float, grace_s: float = END_GRACE_S) -> int:
        """Refuse new calls; let those in progress end by themselves within `deadline_s`, then end
        the rest (`shutdown`) and wait up to `grace_s` for them to close. How many were ended."""
        self.draining = True
        if self._calls:
            log.info("draining: %d calls in progress may go on for %g s", len(self._calls), deadline_s)
        try:
            await asyncio.wait_for(self._idle.wait(), deadline_s)
            return 0
        except TimeoutError:
            pass
        remaining = list(self._calls.values())
        log.warning("drain deadline (%g s) passed: ending %d calls (%s)", deadline_s, len(remaining), SHUTDOWN)
        self.end_all(SHUTDOWN)
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            log.error("%d calls did not end within %g s of the drain deadline", len(self._calls), grace_s)
        return len(remaining)

    def end_all(self, reason: str) -> None:
        """Ask every open call to end now (the drain's deadline, or a second SIGTERM)."""
        for call in list(self._calls.values()):
            call.end(reason)

    def max_decode_lag(self) -> float:
        now = time.monotonic()
        # Only calls in progress: one storing its end has nothing left to recognize.
        return max((c.decode_lag(now) for c in self._calls.values() if c.holds_slot), default=0.0)

    def subscribe(self, call_id: str | None = None) -> Subscriber:
        sub = Subscriber(call_id)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def publish(self, event: dict[str, Any]) -> None:
        for sub in self._subscribers:
            sub.offer(event)
