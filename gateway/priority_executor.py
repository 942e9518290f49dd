"""Threads that run blocking work for asyncio callers, the most urgent first.

A plain ThreadPoolExecutor serves in arrival order; recognition is better served by urgency:
the batch that ends an utterance carries the final transcript a caller is waiting for, so it
goes ahead of batches that only advance partial results. The queue's length is also the
gateway's measure of how busy recognition is (`waiting`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")

URGENT = 0
NORMAL = 1


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled while the work ran
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class PriorityExecutor:
    """`workers` threads; `run` awaits `fn(*args)` on one of them. Lower priority values first,
    first come first served within a priority. Work whose caller was cancelled before it started
    is skipped, as ThreadPoolExecutor skips a cancelled future."""

    def __init__(self, workers: int, thread_name_prefix: str = "worker") -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._queue: list[tuple[int, int, Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] = []
        self._cond = threading.Condition()
        self._order = itertools.count()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{thread_name_prefix}_{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def waiting(self) -> int:
        """Work queued and not yet started."""
        return len(self._queue)

    async def run(self, fn: Callable[..., T], *args: Any, priority: int = NORMAL) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._cond:
            if self._closed:
                raise RuntimeError("executor is shut down")
            heapq.heappush(self._queue, (priority, next(self._order), fn, args, future))
            self._cond.notify()
        return await future

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return  # shut down
                _, _, fn, args, future = heapq.heappop(self._queue)
            if future.cancelled():
                continue
            result, error = None, None
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                error = exc
            try:
                future.get_loop().call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the caller's loop is closed: nobody is waiting
                pass

    def shutdown(self, wait: bool = True) -> None:
        """Refuse new work, cancel what has not started, let running work finish."""
        with self._cond:
            self._closed = True
            queued, self._queue = self._queue, []
            self._cond.notify_all()
        for *_, future in queued:
            try:
                future.get_loop().call_soon_threadsafe(future.cancel)
            except RuntimeError:
                pass
        if wait:
            for thread in self._threads:
                thread.join()
