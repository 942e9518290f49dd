"""The recognizer threads' queue: results and errors come back, urgent work goes first."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.priority_executor import NORMAL, URGENT, PriorityExecutor


async def wait_until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def occupy(executor: PriorityExecutor, gate: threading.Event, result: object = None) -> tuple[asyncio.Future, threading.Event]:
    """Work that holds a thread until `gate` is set; and an event set once it runs."""
    started = threading.Event()

    def hold() -> object:
        started.set()
        gate.wait(5)
        return result

    return asyncio.ensure_future(executor.run(hold)), started


async def test_results_and_errors_come_back_to_the_caller():
    executor = PriorityExecutor(2, "test")
    try:
        assert await executor.run(lambda a, b: a + b, 2, 3) == 5
        assert await executor.run(threading.current_thread) is not threading.current_thread()
        with pytest.raises(ZeroDivisionError):
            await executor.run(lambda: 1 / 0)
        assert await executor.run(lambda: "still serving") == "still serving"
    finally:
        executor.shutdown()


async def test_urgent_work_overtakes_queued_work_and_order_holds_within_a_priority():
    executor = PriorityExecutor(1, "test")
    gate, order = threading.Event(), []

    def job(name: str) -> str:
        order.append(name)
        return name

    try:
        first, started = occupy(executor, gate)
        await wait_until(started.is_set)  # the one thread is taken
        jobs = [asyncio.ensure_future(executor.run(job, name, priority=p))
                for name, p in [("partial-1", NORMAL), ("partial-2", NORMAL), ("final-1", URGENT), ("final-2", URGENT)]]
        await wait_until(lambda: executor.waiting == 4)
        gate.set()
        await first
        assert await asyncio.gather(*jobs) == ["partial-1", "partial-2", "final-1", "final-2"]
        assert order == ["final-1", "final-2", "partial-1", "partial-2"]
        assert executor.waiting == 0
    finally:
        gate.set()
        executor.shutdown()


async def test_work_cancelled_before_it_starts_is_skipped():
    executor = PriorityExecutor(1, "test")
    gate, ran = threading.Event(), []
    try:
        first, started = occupy(executor, gate)
        await wait_until(started.is_set)
        skipped = asyncio.ensure_future(executor.run(ran.append, "skipped"))
        await wait_until(lambda: executor.waiting == 1)
        skipped.cancel()
        gate.set()
        await first
        assert await executor.run(ran.append, "after") is None
        assert ran == ["after"]
    finally:
        gate.set()
        executor.shutdown()


async def test_shutdown_finishes_running_work_cancels_queued_work_and_refuses_more():
    executor = PriorityExecutor(1, "test")
    gate = threading.Event()
    running, started = occupy(executor, gate, "finished")
    await wait_until(started.is_set)
    queued = asyncio.ensure_future(executor.run(lambda: "never"))
    await wait_until(lambda: executor.waiting == 1)
    loop = asyncio.get_running_loop()
    stopping = loop.run_in_executor(None, executor.shutdown)  # waits for the running work
    await asyncio.sleep(0.05)
    gate.set()
    await stopping
    assert await running == "finished"
    with pytest.raises(asyncio.CancelledError):
        await queued
    with pytest.raises(RuntimeError, match="shut down"):
        await executor.run(lambda: None)


def test_needs_at_least_one_thread():
    with pytest.raises(ValueError, match="at least 1"):
        PriorityExecutor(0)
