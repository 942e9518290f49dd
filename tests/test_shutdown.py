"""SIGTERM drains: new calls refused, calls in progress go on until the deadline, then end as `shutdown`
with their reports partial, stored and delivered; the process exits 0.

The core and the registry on their own first (no server), then a real `gateway serve` with a fake
claims system (on SQLite and, with GATEWAY_TEST_DATABASE_URL, PostgreSQL).
"""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
import pytest
from sqlalchemy import select
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.calls.core_events import Close, EndCallRow, FlushAudio, Finished, SaveReport, Shutdown
from gateway.calls.registry import CallRegistry
from gateway.telephony.base import TextIn
from fake_claims import fake_claims_system
from gateway.storage.database import calls, create_engine, flow_results, instances
from serve_process import gateway_process, wait_for
from speech.stream import RecognitionOutcome
from test_call_core import Shell, of, sent
from test_recovery_process import PERSONAS, TypedCall, delivered_of, eventually, serve_env


# --- the core and the registry ------------------------------------------------------------------
def test_a_call_ended_by_shutdown_keeps_its_partial_report_with_details():
    shell = Shell()
    shell.start(flow="claim_report")
    shell.send(TextIn("我叫刘磊"))
    shell.message()
    actions = shell.send(Shutdown())
    assert isinstance(actions[0], FlushAudio)  # what was said is decoded first
    assert sent(actions)[-1] == {"event": "error", "message": "gateway shutting down"}
    assert actions[-1] == Close(1001, "gateway shutting down")
    ended = shell.send(Finished(RecognitionOutcome(), 0.0, shell.now))
    [report] = of(SaveReport, ended)
    assert report.status == "partial" and report.slots["reporter_name"] == "刘磊"
    assert report.details["reporter_name"]["value"] == "刘磊" and report.details["reporter_name"]["source"] == "text"
    assert of(EndCallRow, ended) == [EndCallRow("shutdown", 0.0)]


def test_a_stored_report_with_nothing_filled_does_not_stay_in_progress():
    shell = Shell()
    shell.start(flow="claim_report")
    shell.send(TextIn("喂？"))
    saved = of(SaveReport, shell.message())
    assert saved and saved[-1].status == "in_progress"
    ended = shell.send(Finished(RecognitionOutcome(), 0.0, shell.now))
    assert [s.status for s in of(SaveReport, ended)] == ["partial"]


async def test_the_drain_waits_for_calls_then_ends_the_rest():
    registry = CallRegistry(max_calls=4)
    first, second = registry.open("generic"), registry.open("generic")
    assert first is not None and second is not None

    async def hang_up_soon() -> None:
        await asyncio.sleep(0)
        registry.close(first)

    asyncio.get_running_loop().create_task(hang_up_soon())
    drained = asyncio.get_running_loop().create_task(registry.drain(deadline_s=0.2, grace_s=5.0))
    await asyncio.sleep(0)
    assert registry.draining and registry.open("generic") is None  # no new call while draining
    while second.ending is None:
        await asyncio.sleep(0.01)
    assert first.ending is None and second.ending == "shutdown"  # only the call still open is ended
    registry.close(second)
    assert await drained == 1


async def test_a_drain_with_no_calls_returns_at_once():
    registry = CallRegistry(max_calls=4)
    assert await asyncio.wait_for(registry.drain(deadline_s=3600.0), 30) == 0


# --- gateway serve ------------------------------------------------------------------------------
async def _rows(database: str, table, **where):
    engine = create_engine(database)
    try:
        async with engine.connect() as conn:
            query = select(table).where(*[table.c[k] == v for k, v in where.items()])
            return [dict(r) for r in (await conn.execute(query)).mappings().all()]
    finally:
        await engine.dispose()


@pytest.mark.slow
async def test_sigterm_refuses_new_calls_then_ends_open_ones_as_shutdown_and_exits_0(tmp_path, test_database,
                                                                                    model_cache):
    with fake_claims_system() as claims:
        env = serve_env(model_cache, test_database, claims.url, GATEWAY_SHUTDOWN_DRAIN_S="4")
        with gateway_process(tmp_path, env) as (address, process, log):
            wait_for(address, "/healthz", 200, process)
            open_calls = [await TypedCall.open(address, f"drain-{i}", PERSONAS[i]) for i in range(2)]
            for call in open_calls:
                await call.answer(2)
            process.send_signal(signal.SIGTERM)

            draining = wait_for(address, "/healthz", 503, process, timeout=30)
            assert draining.json() == {"status": "draining", "active_calls": 2}
            assert httpx.get(f"http://{address}/livez").status_code == 200
            with pytest.raises(ConnectionClosed) as refused:
                async with connect(f"ws://{address}/ws/call") as ws:
                    await ws.send(json.dumps({"event": "start", "call_id": "too-late", "flow": "claim_report"}))
                    await ws.recv()
            assert (refused.value.rcvd.code, refused.value.rcvd.reason) == (1012, "gateway shutting down, try again")

            # Until the deadline the calls go on: a turn is answered as ever.
            assert (await open_calls[0].answer(1))["event"] == "prompt"

            for call in open_calls:  # then the gateway ends them, saying why
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        call.events.append(json.loads(await asyncio.wait_for(call.ws.recv(), 60)))
                assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "gateway shutting down")
                assert call.events[-1] == {"event": "error", "message": "gateway shutting down"}
            assert await asyncio.to_thread(process.wait, 60) == 0
        output = log.read_text()
        assert "ending 2 calls (shutdown)" in output

        for i in range(2):
            [row] = await _rows(test_database, calls, call_id=f"drain-{i}")
            assert row["end_reason"] == "shutdown" and row["ended_at"] is not None
            [result] = await _rows(test_database, flow_results, call_id=f"drain-{i}")
            assert result["status"] == "partial" and result["slots"]
            assert set(result["details"]) == set(result["slots"])
            delivered = await delivered_of(claims, result["id"])
            assert len(delivered) == 1 and delivered[0]["json"]["status"] == "partial"
        assert await _rows(test_database, calls, call_id="too-late") == []
        # the gateway's row, and the scheduler's that `serve` runs too: both stopped
        found = await _rows(test_database, instances)
        assert [r["role"] for r in found if r["role"] == "gateway"] == ["gateway"]
        assert all(r["stopped_at"] is not None for r in found)


@pytest.mark.slow
async def test_sigterm_with_calls_that_end_by_themselves_does_not_wait_for_the_deadline(tmp_path, test_database,
                                                                                         model_cache):
    with fake_claims_system() as claims:
        # A deadline far beyond the test's patience: the process exits when the last call has ended.
        env = serve_env(model_cache, test_database, claims.url, GATEWAY_SHUTDOWN_DRAIN_S="3600")
        with gateway_process(tmp_path, env) as (address, process, _log):
            wait_for(address, "/healthz", 200, process)
            call = await TypedCall.open(address, "drain-self", PERSONAS[2])
            await call.answer(2)
            process.send_signal(signal.SIGTERM)
            wait_for(address, "/healthz", 503, process, timeout=30)
            await call.ws.close()  # the caller hangs up during the drain
            assert await asyncio.to_thread(process.wait, 60) == 0
        [row] = await _rows(test_database, calls, call_id="drain-self")
        assert row["end_reason"] == "disconnect"  # its own end, not the shutdown's
        [result] = await _rows(test_database, flow_results, call_id="drain-self")
        assert result["status"] == "partial"
        await eventually(lambda: delivered_of(claims, result["id"]), timeout=1.0)
