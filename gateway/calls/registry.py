"""Live calls: capacity, the registry of active calls, and event subscribers."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

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
        self._calls: dict[int, LiveCall] = {}
        self._next_key = 0
        self._subscribers: set[Subscriber] = set()

    @property
    def active(self) -> int:
        return len(self._calls)

    def open(self, protocol: str) -> LiveCall | None:
        """Reserve a place for a call, or None when the gateway is at capacity."""
        if len(self._calls) >= self.max_calls:
            return None
        self._next_key += 1
        call = LiveCall(key=self._next_key, protocol=protocol)
        self._calls[call.key] = call
        return call

    def close(self, call: LiveCall) -> None:
        self._calls.pop(call.key, None)

    def max_decode_lag(self) -> float:
        now = time.monotonic()
        return max((c.decode_lag(now) for c in self._calls.values()), default=0.0)

    def subscribe(self, call_id: str | None = None) -> Subscriber:
        sub = Subscriber(call_id)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def publish(self, event: dict[str, Any]) -> None:
        for sub in self._subscribers:
            sub.offer(event)
