"""A receipt sink that records what it is handed (the scheduler's sink stands in its place in
production), safe to read from the test's thread while a gateway thread writes."""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

from scheduler.channels.base import Receipt, Reply


class RecordingSink:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received: list[Receipt] = []
        self.replied: list[Reply] = []

    async def receipts(self, items: Sequence[Receipt]) -> None:
        with self._lock:
            self.received.extend(items)

    async def replies(self, items: Sequence[Reply]) -> None:
        with self._lock:
            self.replied.extend(items)

    def of(self, delivery_id: str) -> list[Receipt]:
        with self._lock:
            return [r for r in self.received if r.delivery_id == delivery_id]

    def wait_for(self, check: Callable[[list[Receipt]], bool], delivery_id: str, timeout: float = 60.0) -> list[Receipt]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.of(delivery_id)
            if check(got):
                return got
            time.sleep(0.05)
        raise TimeoutError(f"receipts for {delivery_id} not as expected: {self.of(delivery_id)}")
