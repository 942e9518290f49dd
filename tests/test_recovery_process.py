"""kill -9 in the middle of a claim call: after a restart (or by a live peer) the report is `partial` with
what the caller said, the call has ended, and the claims system gets it exactly once.

Real `gateway serve` processes on loopback, a fake claims system over HTTP, calls typed over
/ws/call; on SQLite and on PostgreSQL (GATEWAY_TEST_DATABASE_URL). Heartbeats are made short
(`instance_heartbeat_s`, `instance_dead_after_s`) so that a dead process is recognized in seconds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from conftest import SHARED
from fake_claims import fake_claims_system
from gateway.storage import outbox
from gateway.storage.database import create_engine
from serve_process import gateway_process, wait_for

EVAL = SHARED / "eval"
PERSONAS = [json.loads(line) for line in (EVAL / "claim_dev.jsonl").read_text(encoding="utf-8").splitlines() if line]
SECRET = "claims-secret"


def _simcaller():
    spec = importlib.util.spec_from_file_location("simcaller_recovery", EVAL / "simcaller.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


simcaller = _simcaller()


def serve_env(model_cache: Path, database: str, claims_url: str, **extra: str) -> dict[str, str]:
    return {"GATEWAY_MODEL_CACHE_DIR": str(model_cache), "GATEWAY_MODEL_MIRRORS": "", "GATEWAY_MODEL_URL": "",
            "GATEWAY_DATABASE_URL": database, "GATEWAY_TTS_ENGINE": "none", "GATEWAY_RECOGNIZER_POOL_SIZE": "2",
            "GATEWAY_RECOGNIZER_WORKERS": "1", "GATEWAY_MAX_CALLS": "4", "GATEWAY_CLAIMS_WEBHOOK_URL": claims_url,
            "GATEWAY_CLAIMS_WEBHOOK_SECRET": SECRET, "GATEWAY_CLAIMS_WEBHOOK_BACKOFF_S": "0.2",
            "GATEWAY_INSTANCE_HEARTBEAT_S": "0.5", "GATEWAY_INSTANCE_DEAD_AFTER_S": "4", **extra}


class TypedCall:
    """A claim call typed over /ws/call by a simulated caller, left open after some turns."""

    def __init__(self, ws: ClientConnection, persona: dict) -> None:
        self.ws = ws
        self.caller = simcaller.Caller(persona)
        self.events: list[dict] = []

    @classmethod
    async def open(cls, address: str, call_id: str, persona: dict) -> "TypedCall":
        ws = await connect(f"ws://{address}/ws/call")
        await ws.send(json.dumps({"event": "start", "flow": "claim_report", "call_id": call_id,
                                  "caller_number": persona["caller_number"], "started_at": persona["started_at"]},
                                 ensure_ascii=False))
        call = cls(ws, persona)
        await call.next_prompt()
        return call

    async def next_prompt(self) -> dict:
        while True:
            event = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            self.events.append(event)
            if event["event"] == "prompt":
                return event

    async def answer(self, turns: int) -> dict:
        """Answer `turns` prompts; the prompt after the last answer (its turn is stored by then)."""
        prompt = next(e for e in reversed(self.events) if e["event"] == "prompt")
        for _ in range(turns):
            self.caller.turns += 1
            await self.ws.send(json.dumps({"event": "text", "text": self.caller.answer(prompt)}, ensure_ascii=False))
            prompt = await self.next_prompt()
        return prompt


async def report_of(address: str, call_id: str) -> dict | None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{address}/api/reports", params={"call_id": call_id})
    response.raise_for_status()
    found = response.json()["reports"]
    return found[0] if found else None


async def call_of(address: str, call_id: str) -> dict:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{address}/api/calls/{call_id}/transcript")
    response.raise_for_status()
    return response.json()


async def eventually(predicate, timeout: float = 60.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.1)


def kill_9(process) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(30)
    assert process.returncode == -signal.SIGKILL


async def queued_for(database: str, aggregate_id: str) -> list[dict]:
    engine = create_engine(database)
    try:
        return [r for r in await outbox.pending(engine) if r["aggregate_id"] == aggregate_id]
    finally:
        await engine.dispose()


async def delivered_of(claims, report_id: str) -> list[dict]:
    return [d for d in claims.deliveries() if d["json"]["report_id"] == report_id]


@pytest.mark.slow
async def test_kill_9_mid_call_then_restart_delivers_the_partial_report_exactly_once(tmp_path, test_database,
                                                                                  model_cache):
    persona = PERSONAS[1]
    with fake_claims_system() as claims:
        env = serve_env(model_cache, test_database, claims.url)
        with gateway_process(tmp_path, env) as (address, process, _log):
            wait_for(address, "/healthz", 200, process)
            call = await TypedCall.open(address, "crash-1", persona)
            await call.answer(2)
            before = await report_of(address, "crash-1")
            assert before["status"] == "in_progress" and before["slots"]
            assert set(before["details"]) == set(before["slots"])  # saved with its details, turn by turn
            kill_9(process)
            await call.ws.close()
        assert claims.deliveries() == []  # nothing was final when it died

        with gateway_process(tmp_path, env) as (address, process, log):
            wait_for(address, "/livez", 200, process)
            report = await eventually(lambda: _final(address, "crash-1"))
            assert report["status"] == "partial"
            assert report["slots"] == before["slots"] and report["details"] == before["details"]
            assert report["transcript"] == before["transcript"]
            ended = await call_of(address, "crash-1")
            assert ended["ended_at"] is not None and ended["end_reason"] == "process died"
            delivered = await eventually(lambda: delivered_of(claims, report["report_id"]))
            assert delivered[0]["json"]["status"] == "partial"
            assert delivered[0]["json"]["slots"] == before["slots"]
            # Once: one outbox row, delivered; a few more recovery passes change nothing.
            await asyncio.sleep(2.0)
            [row] = await queued_for(test_database, report["report_id"])
            assert row["delivered_at"] is not None
            process.terminate()
            assert process.wait(60) == 0
        assert len(await delivered_of(claims, report["report_id"])) == 1
        assert "closed 1 calls and 1 flow results" in log.read_text()


async def _final(address: str, call_id: str):
    report = await report_of(address, call_id)
    return report if report and report["status"] != "in_progress" else None


@pytest.mark.slow
async def test_of_two_gateways_the_live_one_takes_over_the_killed_ones_call_and_keeps_its_own(tmp_path,
                                                                                          test_database,
                                                                                          model_cache):
    with fake_claims_system() as claims:
        env = serve_env(model_cache, test_database, claims.url)
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        with gateway_process(tmp_path / "a", env) as (address_a, process_a, _), \
                gateway_process(tmp_path / "b", env) as (address_b, process_b, _):
            wait_for(address_a, "/healthz", 200, process_a)
            wait_for(address_b, "/healthz", 200, process_b)
            on_a = await TypedCall.open(address_a, "peer-a", PERSONAS[0])
            on_b = await TypedCall.open(address_b, "peer-b", PERSONAS[1])
            await on_a.answer(2)
            await on_b.answer(2)
            kill_9(process_b)
            await on_b.ws.close()

            # A finds B's heartbeat expired and closes B's call; its own goes on.
            recovered = await eventually(lambda: _final(address_a, "peer-b"))
            assert recovered["status"] == "partial" and recovered["slots"]
            assert (await call_of(address_a, "peer-b"))["end_reason"] == "process died"
            delivered = await eventually(lambda: delivered_of(claims, recovered["report_id"]))
            assert len(delivered) == 1
            mine = await report_of(address_a, "peer-a")
            assert mine["status"] == "in_progress"
            assert (await call_of(address_a, "peer-a"))["ended_at"] is None
            prompt = await on_a.answer(1)  # the call on the live gateway still talks
            assert prompt["event"] == "prompt"
            assert len((await report_of(address_a, "peer-a"))["slots"]) >= len(mine["slots"])
            assert (await report_of(address_a, "peer-a"))["status"] == "in_progress"
            await on_a.ws.close()
            finished = await eventually(lambda: _final(address_a, "peer-a"))
            assert finished["status"] == "partial"  # the caller hung up: its own, ordinary end
            assert (await call_of(address_a, "peer-a"))["end_reason"] != "process died"
            await eventually(lambda: delivered_of(claims, finished["report_id"]))
        assert len(await delivered_of(claims, recovered["report_id"])) == 1
        assert len(await delivered_of(claims, finished["report_id"])) == 1
