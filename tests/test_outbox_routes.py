"""The generic outbox: each topic to its own webhook and secret, claims unchanged, restart-safe, leased once."""

from __future__ import annotations

import asyncio
import logging
import uuid

import httpx

from conftest import free_port, running_gateway
from fake_claims import fake_claims_system
from gateway.storage import migrate, outbox, reports, results
from gateway.storage.database import create_engine
from gateway.storage.outbox import OutboxWorker, Route, verify

CLAIMS_SECRET, SURVEY_SECRET = "claims-secret", "survey-secret"


async def wait_until(predicate, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)
    return value


async def _queue(engine, topic: str, aggregate_id: str, payload: dict) -> None:
    async with engine.begin() as conn:
        assert await outbox.enqueue(conn, topic=topic, aggregate_id=aggregate_id, payload=payload)


async def test_a_second_topic_goes_to_its_own_webhook_and_claims_are_unchanged(make_settings, test_database):
    with fake_claims_system() as claims, fake_claims_system() as surveys:
        settings = make_settings(claims_webhook_url=claims.url, claims_webhook_secret=CLAIMS_SECRET,
                                 webhooks={"survey_result": {"url": surveys.url, "secret": SURVEY_SECRET}})
        with running_gateway(settings) as address:
            engine = create_engine(test_database)
            try:
                await results.save(engine, result_id="s1", call_id="call-s1", flow="satisfaction_survey",
                                   topic="survey_result", status="complete", caller_number="13900139000",
                                   slots={"score": "5"}, details={}, transcript=[])
                claim = reports.delivery_for("claim_report")
                await results.save(engine, result_id="d" * 32, call_id="call-c1", flow="claim_report",
                                   status="complete", caller_number="13800138000", slots={"reporter_name": "张伟"},
                                   details={}, transcript=[], policy_number="P1", topic=claim.topic,
                                   final_statuses=claim.final_statuses, payload=claim.payload)
                await _queue(engine, "no_route_yet", "x1", {"n": 1})
                [survey] = await wait_until(surveys.deliveries)
                [delivered_claim] = await wait_until(claims.deliveries)
                await asyncio.sleep(0.5)
                rows = {r["topic"]: r for r in await outbox.pending(engine)}
            finally:
                await engine.dispose()
            async with httpx.AsyncClient() as client:  # the claims API sees the claim, not the survey
                listed = (await client.get(f"http://{address}/api/reports")).json()
            assert [r["report_id"] for r in listed["reports"]] == ["d" * 32]

    headers = survey["headers"]
    assert headers["x-gateway-event"] == "survey_result"
    assert verify(SURVEY_SECRET, headers["x-gateway-timestamp"], survey["body"], headers["x-gateway-signature"])
    assert not verify(CLAIMS_SECRET, headers["x-gateway-timestamp"], survey["body"], headers["x-gateway-signature"])
    assert survey["json"]["result_id"] == "s1" and survey["json"]["slots"] == {"score": "5"}
    # Globally unique, not the row's per-database number: another gateway's or a restored backup's
    # rows never reuse one.
    assert headers["x-gateway-delivery"] == rows["survey_result"]["delivery_id"]
    assert str(uuid.UUID(headers["x-gateway-delivery"])) == headers["x-gateway-delivery"]
    assert headers["x-gateway-delivery"] != str(rows["survey_result"]["id"])

    headers = delivered_claim["headers"]
    assert headers["x-gateway-event"] == "claim_report"
    assert headers["x-gateway-delivery"] == rows["claim_report"]["delivery_id"] != rows["survey_result"]["delivery_id"]
    assert verify(CLAIMS_SECRET, headers["x-gateway-timestamp"], delivered_claim["body"], headers["x-gateway-signature"])
    assert sorted(delivered_claim["json"]) == sorted(["event", "report_id", "call_id", "flow", "status", "caller_number",
                                                      "policy_number", "slots", "details", "transcript", "created_at"])
    assert delivered_claim["json"]["report_id"] == "d" * 32 and delivered_claim["json"]["policy_number"] == "P1"
    assert len(claims.deliveries()) == 1 and len(surveys.deliveries()) == 1
    assert rows["survey_result"]["delivered_at"] is not None and rows["claim_report"]["delivered_at"] is not None
    assert rows["no_route_yet"]["delivered_at"] is None and rows["no_route_yet"]["attempts"] == 0


async def test_a_topic_without_a_route_waits_and_is_named_once(test_database, caplog):
    engine = create_engine(test_database)
    await migrate.upgrade(engine)
    try:
        for n in range(3):
            await _queue(engine, "reminder_call", f"r{n}", {"n": n})
        worker = OutboxWorker(engine, {})
        with caplog.at_level(logging.WARNING, logger="gateway.storage.outbox"):
            assert await worker.warn_unrouted() == ["reminder_call"]
            assert await worker.warn_unrouted() == []
            async with httpx.AsyncClient() as client:
                assert await worker.deliver_due(client) is False
        assert sum("reminder_call" in r.getMessage() for r in caplog.records) == 1
        assert all(r["delivered_at"] is None and r["attempts"] == 0 for r in await outbox.pending(engine))
    finally:
        await engine.dispose()


async def test_a_restart_resumes_pending_deliveries_and_never_resends(test_database):
    engine = create_engine(test_database)
    await migrate.upgrade(engine)
    try:
        await _queue(engine, "survey_result", "s1", {"event": "survey_result", "result_id": "s1"})
        dead = Route(f"http://127.0.0.1:{free_port()}/hooks", SURVEY_SECRET, backoff_s=0.05)
        async with httpx.AsyncClient(timeout=2) as client:
            await OutboxWorker(engine, {"survey_result": dead}).deliver_due(client)
            [row] = await outbox.pending(engine)
            assert row["attempts"] == 1 and row["delivered_at"] is None and "ConnectError" in row["last_error"]
            with fake_claims_system() as surveys:
                live = {"survey_result": Route(surveys.url, SURVEY_SECRET, backoff_s=0.05)}
                await asyncio.sleep(0.1)  # past the backoff
                assert await OutboxWorker(engine, live).deliver_due(client)  # the next life
                assert not await OutboxWorker(engine, live).deliver_due(client)  # and the one after
                assert [d["json"]["result_id"] for d in surveys.deliveries()] == ["s1"]
        [row] = await outbox.pending(engine)
        assert row["attempts"] == 2 and row["delivered_at"] is not None and row["last_error"] is None
    finally:
        await engine.dispose()


async def test_two_workers_on_one_database_deliver_each_row_once(test_database):
    engines = [create_engine(test_database), create_engine(test_database)]
    await migrate.upgrade(engines[0])
    try:
        for n in range(30):
            await _queue(engines[0], "survey_result", f"s{n}", {"result_id": f"s{n}"})
        with fake_claims_system() as surveys:
            routes = {"survey_result": Route(surveys.url, SURVEY_SECRET)}
            workers = [OutboxWorker(e, routes) for e in engines]
            async with httpx.AsyncClient() as client:
                while any(await asyncio.gather(*(w.deliver_due(client) for w in workers))):
                    pass
            got = sorted(d["json"]["result_id"] for d in surveys.deliveries())
        assert got == sorted(f"s{n}" for n in range(30))
        assert all(r["delivered_at"] is not None and r["attempts"] == 1 for r in await outbox.pending(engines[0]))
    finally:
        for engine in engines:
            await engine.dispose()
