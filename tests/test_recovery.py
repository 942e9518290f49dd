"""What a dead gateway process left open is closed by a live one, once: storage level, with a controlled clock.

Two (or three) instance ids stand for gateway processes sharing the database; time is passed in,
so "B's heartbeat expired" is a date, not a wait. Runs on SQLite and, with
GATEWAY_TEST_DATABASE_URL, on PostgreSQL (where several gateways really share a database).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from sqlalchemy import insert, select

from gateway.storage import instances, migrate, outbox, recovery, reports, results
from gateway.storage.database import Database, calls, create_engine
from gateway.storage.database import instances as instances_table
from gateway.storage.instances import Instance
from gateway.storage.recovery import Keeper, Recovered

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
DEAD_AFTER_S = 30.0
SLOTS = {"reporter_name": "刘磊", "insured_id_number": "110101199001011234"}
DETAILS = {"reporter_name": {"value": "刘磊", "confidence": 0.9, "turn": 1, "source": "text"},
           "insured_id_number": {"value": "110101199001011234", "confidence": 0.95, "turn": 2, "source": "text"}}
TRANSCRIPT = [{"speaker": "bot", "text": "您好，请问您的姓名？", "at": "2026-12-01T16:00:00+08:00", "slot": "reporter_name"},
              {"speaker": "caller", "text": "我叫刘磊", "at": "2026-12-01T16:00:03+08:00"}]


def gateway(name: str) -> Instance:
    return Instance(name, "gateway", "host-" + name, 100)


async def _engine(url: str):
    engine = create_engine(url)
    await migrate.upgrade(engine)
    return engine


async def open_call(engine, call_id: str, owner: str | None, *, topic: str = reports.TOPIC) -> None:
    """A call in progress as a gateway writes it: its call row, and its result saved after a caller turn."""
    await Database(engine).start_call(call_id, "generic", "13800138000", owner)
    delivery = reports.delivery_for(topic)
    await results.save(engine, result_id="r-" + call_id, call_id=call_id, flow="claim_report", status="in_progress",
                       caller_number="13800138000", slots=SLOTS, details=DETAILS, transcript=TRANSCRIPT,
                       topic=delivery.topic, final_statuses=delivery.final_statuses, payload=delivery.payload,
                       instance_id=owner)


async def call_row(engine, call_id: str) -> dict:
    async with engine.connect() as conn:
        return dict((await conn.execute(select(calls).where(calls.c.call_id == call_id))).mappings().one())


async def test_a_dead_peers_open_call_is_recovered_once_and_a_live_peers_is_untouched(test_database):
    engine = await _engine(test_database)
    try:
        a, b = gateway("a"), gateway("b")
        await instances.register(engine, a, T0)
        await instances.register(engine, b, T0)
        await open_call(engine, "call-a", "a")
        await open_call(engine, "call-b", "b")

        # B's heartbeat is 20 s old: alive still; nothing is touched.
        await instances.heartbeat(engine, "a", T0 + timedelta(seconds=20))
        assert await recovery.dead_peers(engine, "a", T0 + timedelta(seconds=20), DEAD_AFTER_S) == Recovered()

        # 31 s: B is dead (kill -9: no heartbeat, no stopped_at). A takes over B's call, not its own.
        await instances.heartbeat(engine, "a", T0 + timedelta(seconds=30))
        at = T0 + timedelta(seconds=31)
        assert await recovery.dead_peers(engine, "a", at, DEAD_AFTER_S) == Recovered(calls=1, results=1, queued=1)

        ended = await call_row(engine, "call-b")
        assert ended["end_reason"] == "process died" and ended["ended_at"] is not None
        report = await results.get(engine, "r-call-b")
        assert report["status"] == "partial" and report["ended_at"] is not None
        assert (report["slots"], report["details"], report["transcript"]) == (SLOTS, DETAILS, TRANSCRIPT)
        [queued] = await outbox.pending(engine)
        assert (queued["topic"], queued["aggregate_id"]) == ("claim_report", "r-call-b")
        body = queued["payload"]  # the claims webhook's own body, with what was collected
        assert body["event"] == "claim_report" and body["report_id"] == "r-call-b" and body["status"] == "partial"
        assert (body["slots"], body["details"], body["transcript"]) == (SLOTS, DETAILS, TRANSCRIPT)

        # The live peer's call goes on untouched, and is saved as it goes.
        live = await call_row(engine, "call-a")
        assert live["ended_at"] is None and live["end_reason"] is None
        assert (await results.get(engine, "r-call-a"))["status"] == "in_progress"

        # Again (another pass, another peer): nothing more, nothing queued twice.
        later = T0 + timedelta(seconds=40)
        await instances.heartbeat(engine, "a", later)
        assert await recovery.dead_peers(engine, "a", later, DEAD_AFTER_S) == Recovered()
        assert await recovery.dead_peers(engine, "c", later, DEAD_AFTER_S) == Recovered()
        assert len(await outbox.pending(engine)) == 1
    finally:
        await engine.dispose()


async def test_a_stopped_process_is_dead_at_once_and_other_topics_get_their_own_body(test_database):
    engine = await _engine(test_database)
    try:
        await instances.register(engine, gateway("a"), T0)
        await instances.register(engine, gateway("b"), T0)
        await open_call(engine, "call-b", "b", topic="survey_result")
        await instances.stop(engine, "b", T0 + timedelta(seconds=1))  # stopped without closing it
        assert (await recovery.dead_peers(engine, "a", T0 + timedelta(seconds=2), DEAD_AFTER_S)).results == 1
        [queued] = await outbox.pending(engine)
        assert queued["topic"] == "survey_result"
        assert queued["payload"]["event"] == "survey_result" and queued["payload"]["result_id"] == "r-call-b"
        assert queued["payload"]["status"] == "partial" and queued["payload"]["details"] == DETAILS
    finally:
        await engine.dispose()


async def test_at_start_rows_without_an_owner_are_dead_and_on_sqlite_so_is_every_other(test_database):
    engine = await _engine(test_database)
    try:
        await instances.register(engine, gateway("b"), T0)  # a peer, heartbeat fresh
        await open_call(engine, "call-old", None)  # written before migration 0004: no owner
        await open_call(engine, "call-b", "b")
        start = T0 + timedelta(seconds=1)
        recovered = await recovery.at_start(engine, "c", start, DEAD_AFTER_S)
        assert (await results.get(engine, "r-call-old"))["status"] == "partial"
        assert (await call_row(engine, "call-old"))["end_reason"] == "process died"
        peer = (await results.get(engine, "r-call-b"))["status"]
        if engine.dialect.name == "sqlite":
            # One node: whatever is open and not this process's was left by a process that is gone.
            assert recovered == Recovered(calls=2, results=2, queued=2) and peer == "partial"
        else:
            # Several gateways may share PostgreSQL: a live peer's call is its own.
            assert recovered == Recovered(calls=1, results=1, queued=1) and peer == "in_progress"
            assert (await call_row(engine, "call-b"))["ended_at"] is None
    finally:
        await engine.dispose()


async def test_two_gateways_recovering_at_once_recover_each_row_exactly_once(test_database):
    engines = [await _engine(test_database), create_engine(test_database)]
    try:
        engine = engines[0]
        for name in ("a", "b", "c"):
            await instances.register(engine, gateway(name), T0)
        for i in range(12):
            await open_call(engine, f"call-{i}", "b")
        for name in ("a", "c"):
            await instances.heartbeat(engine, name, T0 + timedelta(seconds=60))
        at = T0 + timedelta(seconds=61)
        # A and C, each on its own connection pool, both find B dead and recover at the same moment.
        first, second = await asyncio.gather(recovery.dead_peers(engines[0], "a", at, DEAD_AFTER_S),
                                             recovery.dead_peers(engines[1], "c", at, DEAD_AFTER_S))
        assert first.results + second.results == 12 and first.calls + second.calls == 12
        assert first.queued + second.queued == 12
        rows = await outbox.pending(engine)
        assert sorted(r["aggregate_id"] for r in rows) == sorted(f"r-call-{i}" for i in range(12))
        assert len({r["delivery_id"] for r in rows}) == 12
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_late_save_of_a_recovered_result_does_not_overwrite_what_was_delivered(test_database):
    engine = await _engine(test_database)
    try:
        await open_call(engine, "call-z", "z")  # z: never registered, so dead
        assert (await recovery.dead_peers(engine, "a", T0, DEAD_AFTER_S)).results == 1
        # z was only slow (its heartbeat late, not its process gone): its next save comes in.
        delivery = reports.delivery_for(reports.TOPIC)
        assert not await results.save(engine, result_id="r-call-z", call_id="call-z", flow="claim_report",
                                      status="complete", caller_number="13800138000", slots={}, details={},
                                      transcript=[], topic=delivery.topic, final_statuses=delivery.final_statuses,
                                      payload=delivery.payload, instance_id="z")
        stored = await results.get(engine, "r-call-z")
        assert stored["status"] == "partial" and stored["slots"] == SLOTS
        assert len(await outbox.pending(engine)) == 1
    finally:
        await engine.dispose()


async def test_the_keeper_registers_beats_and_at_stop_closes_its_own_calls_as_shutdown(test_database):
    engine = await _engine(test_database)
    try:
        clock = [T0]
        woken: list[bool] = []
        keeper = Keeper(engine, gateway("k"), heartbeat_s=5.0, dead_after_s=DEAD_AFTER_S,
                        on_queued=lambda: woken.append(True), clock=lambda: clock[0])
        assert await keeper.start() == Recovered()
        row = await instances.get(engine, "k")
        assert (row["role"], row["hostname"], row["pid"], row["stopped_at"]) == ("gateway", "host-k", 100, None)
        await open_call(engine, "call-k", "k")
        clock[0] = T0 + timedelta(seconds=5)
        assert await keeper.beat() == Recovered()  # its own call is not a dead peer's
        assert results.as_utc((await instances.get(engine, "k"))["heartbeat_at"]) == clock[0]
        clock[0] = T0 + timedelta(seconds=7)
        assert await keeper.stop() == Recovered(calls=1, results=1, queued=1)
        assert (await call_row(engine, "call-k"))["end_reason"] == "shutdown"
        assert (await results.get(engine, "r-call-k"))["status"] == "partial"
        assert (await instances.get(engine, "k"))["stopped_at"] is not None
        assert woken == [True]  # the outbox worker is told
    finally:
        await engine.dispose()


async def test_a_keeper_at_start_recovers_what_the_previous_process_left(test_database):
    engine = await _engine(test_database)
    try:
        await instances.register(engine, gateway("old"), T0)
        await open_call(engine, "call-old", "old")  # then kill -9: no stop, the heartbeat ends
        keeper = Keeper(engine, gateway("new"), heartbeat_s=5.0, dead_after_s=DEAD_AFTER_S,
                        clock=lambda: T0 + timedelta(seconds=DEAD_AFTER_S + 1))
        assert (await keeper.start()).results == 1
        assert (await results.get(engine, "r-call-old"))["status"] == "partial"
    finally:
        await engine.dispose()


async def test_a_result_insert_names_its_owner(test_database):
    engine = await _engine(test_database)
    try:
        await open_call(engine, "call-o", "owner-1")
        assert (await results.get(engine, "r-call-o"))["instance_id"] == "owner-1"
        assert (await call_row(engine, "call-o"))["instance_id"] == "owner-1"
        async with engine.begin() as conn:  # a row as 0003 left it
            await conn.execute(insert(calls).values(call_id="legacy", protocol="generic", started_at=T0, audio_seconds=0.0))
        assert (await call_row(engine, "legacy"))["instance_id"] is None
    finally:
        await engine.dispose()


async def test_the_keepers_beat_prunes_processes_stopped_or_dead_longer_than_the_retention(test_database):
    engine = await _engine(test_database)
    try:
        week = 7 * 86400.0
        now = T0 + timedelta(days=30)
        await instances.register(engine, gateway("stopped-long-ago"), T0)
        await instances.stop(engine, "stopped-long-ago", now - timedelta(days=8))
        await instances.register(engine, gateway("died-long-ago"), now - timedelta(days=9))  # kill -9: no stop
        await open_call(engine, "call-died", "died-long-ago")  # what it left is recovered before its row goes
        await instances.register(engine, gateway("stopped-yesterday"), now - timedelta(days=2))
        await instances.stop(engine, "stopped-yesterday", now - timedelta(days=1))
        await instances.register(engine, gateway("peer"), T0)  # running for 30 days, beating
        await instances.heartbeat(engine, "peer", now - timedelta(seconds=3))
        keeper = Keeper(engine, gateway("k"), heartbeat_s=5.0, dead_after_s=DEAD_AFTER_S, retention_s=week,
                        clock=lambda: now)
        await instances.register(engine, keeper.instance, now - timedelta(seconds=5))
        assert await keeper.beat() == Recovered(calls=1, results=1, queued=1)
        async with engine.connect() as conn:
            left = set((await conn.execute(select(instances_table.c.instance_id))).scalars())
        assert left == {"stopped-yesterday", "peer", "k"}
        assert (await call_row(engine, "call-died"))["end_reason"] == "process died"
        # Without a retention every row stays.
        await instances.register(engine, gateway("old"), T0)
        assert await Keeper(engine, gateway("k"), heartbeat_s=5.0, dead_after_s=DEAD_AFTER_S,
                            clock=lambda: now).beat() == Recovered()
        assert await instances.get(engine, "old") is not None
    finally:
        await engine.dispose()
