"""Schema migrations: a database made before migrations keeps every row, the CLI, one migrator at a time."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import (
    JSON, Column, Date, DateTime, Float, ForeignKey, Integer, MetaData, String, Table, Text, UniqueConstraint,
    inspect, select,
)

from gateway.storage import migrate, outbox, reports, results
from gateway.storage.database import calls, create_engine, policies, transcript_segments

ROOT = Path(__file__).resolve().parent.parent

# The tables exactly as `Database.create_schema` made them before migrations (frozen here on
# purpose: not imported from the code, which follows the newest schema).
old = MetaData()
old_calls = Table(
    "calls", old,
    Column("id", Integer, primary_key=True),
    Column("call_id", String(128), nullable=False, index=True),
    Column("protocol", String(32), nullable=False),
    Column("caller_number", String(64)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("end_reason", String(128)),
    Column("audio_seconds", Float, nullable=False, default=0.0),
)
old_segments = Table(
    "transcript_segments", old,
    Column("id", Integer, primary_key=True),
    Column("call_pk", Integer, ForeignKey("calls.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("start_s", Float),
    Column("end_s", Float),
    Column("confidence", Float),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
old_policies = Table(
    "policies", old,
    Column("policy_number", String(64), primary_key=True),
    Column("product", String(128), nullable=False, default=""),
    Column("holder_name", String(64), nullable=False, default=""),
    Column("insured_name", String(64), nullable=False),
    Column("insured_id_number", String(18), nullable=False, index=True),
    Column("phone", String(32), nullable=False, default="", index=True),
    Column("start_date", Date),
    Column("expiry_date", Date),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
old_reports = Table(
    "claim_reports", old,
    Column("id", String(32), primary_key=True),
    Column("call_id", String(128), nullable=False, index=True),
    Column("flow", String(64), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("caller_number", String(64)),
    Column("policy_number", String(64)),
    Column("slots", JSON, nullable=False),
    Column("details", JSON, nullable=False),
    Column("transcript", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
old_outbox = Table(
    "outbox", old,
    Column("id", Integer, primary_key=True),
    Column("report_id", String(32), ForeignKey("claim_reports.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, index=True),
    Column("leased_until", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_error", Text),
    UniqueConstraint("report_id", "event", name="uq_outbox_report_event"),
)

T0 = datetime(2026, 11, 20, 1, 2, 3, tzinfo=timezone.utc)
COMPLETE_ID, IN_PROGRESS_ID = "a" * 32, "b" * 32
COMPLETE = {
    "id": COMPLETE_ID, "call_id": "call-1", "flow": "claim_report", "status": "complete",
    "caller_number": "13800138000", "policy_number": "P100",
    "slots": {"reporter_name": "张伟", "insured_id_number": "11010519491231002X", "hospital": "北京协和医院"},
    "details": {"reporter_name": {"value": "张伟", "confidence": 0.91, "source": "speech", "turn": 1},
                "insured_id_number": {"value": "11010519491231002X", "confidence": 1.0, "source": "record", "turn": 2}},
    "transcript": [{"speaker": "bot", "text": "您好", "at": "2026-11-20T09:02:03+08:00"},
                   {"speaker": "caller", "text": "我是张伟", "at": "2026-11-20T09:02:06+08:00"}],
    "created_at": T0, "updated_at": T0 + timedelta(minutes=3),
}
IN_PROGRESS = {
    "id": IN_PROGRESS_ID, "call_id": "call-2", "flow": "claim_status_callback", "status": "in_progress",
    "caller_number": None, "policy_number": None, "slots": {"reporter_name": "李娜"}, "details": {},
    "transcript": [{"speaker": "caller", "text": "我叫李娜", "at": "2026-11-21T10:00:00+08:00"}],
    "created_at": T0 + timedelta(days=1), "updated_at": T0 + timedelta(days=1, seconds=30),
}
DELIVERED = {
    "id": 7, "report_id": COMPLETE_ID, "event": "claim_report",
    "payload": {"event": "claim_report", "report_id": COMPLETE_ID, "status": "complete", "slots": COMPLETE["slots"]},
    "created_at": T0 + timedelta(minutes=3), "attempts": 2, "next_attempt_at": T0 + timedelta(minutes=4),
    "leased_until": None, "delivered_at": T0 + timedelta(minutes=5), "last_error": None,
}
PENDING = {
    "id": 9, "report_id": IN_PROGRESS_ID, "event": "claim_report",
    "payload": {"event": "claim_report", "report_id": IN_PROGRESS_ID, "status": "partial"},
    "created_at": T0 + timedelta(days=1), "attempts": 3, "next_attempt_at": T0 + timedelta(days=1, hours=1),
    "leased_until": None, "delivered_at": None, "last_error": "HTTP 503",
}
CALL = {"id": 3, "call_id": "call-1", "protocol": "generic", "caller_number": "13800138000", "started_at": T0,
        "ended_at": T0 + timedelta(minutes=3), "end_reason": "hangup", "audio_seconds": 180.5}
SEGMENT = {"id": 4, "call_pk": 3, "seq": 0, "text": "我是张伟", "start_s": 1.25, "end_s": 2.5, "confidence": 0.93,
           "created_at": T0 + timedelta(seconds=3)}
POLICY = {"policy_number": "P100", "product": "医疗险", "holder_name": "张伟", "insured_name": "张伟",
          "insured_id_number": "11010519491231002X", "phone": "13800138000", "start_date": date(2025, 1, 1),
          "expiry_date": date(2026, 12, 31), "updated_at": T0 - timedelta(days=30)}


def utc(row: dict) -> dict:
    """A row with its datetimes in UTC (SQLite hands them back naive)."""
    return {k: results.as_utc(v) if isinstance(v, datetime) else v for k, v in row.items()}


async def build_old_database(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(old.create_all)
            await conn.execute(old_calls.insert().values(**CALL))
            await conn.execute(old_segments.insert().values(**SEGMENT))
            await conn.execute(old_policies.insert().values(**POLICY))
            await conn.execute(old_reports.insert(), [COMPLETE, IN_PROGRESS])
            await conn.execute(old_outbox.insert(), [DELIVERED, PENDING])
    finally:
        await engine.dispose()


async def test_a_database_from_before_migrations_is_recognized_and_keeps_every_row(test_database):
    await build_old_database(test_database)
    engine = create_engine(test_database)
    try:
        found = await migrate.state(engine)
        assert (found.current, found.word, found.stamped) == ("0001", "behind", False)
        assert await migrate.upgrade(engine) == migrate.head_revision()
        assert (await migrate.state(engine)).word == "head"

        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            assert {"claim_reports", "outbox_0001"}.isdisjoint(tables) and {"flow_results", "outbox"} <= tables
            # Columns added later (0004 instance_id; 0005 openid and consent) are empty on old rows.
            assert utc(dict((await conn.execute(select(calls))).mappings().one())) == {**CALL, "instance_id": None}
            assert utc(dict((await conn.execute(select(transcript_segments))).mappings().one())) == SEGMENT
            assert utc(dict((await conn.execute(select(policies))).mappings().one())) == {
                **POLICY, "wechat_openid": None, "consent_sms": None, "consent_wechat": None, "consent_voice": None,
                "consent_marketing": None, "receipt_date": None, "holder_id_number": None}

        for before in (COMPLETE, IN_PROGRESS):
            after = utc(await results.get(engine, before["id"]))
            assert {k: after[k] for k in before} == before
            assert after["topic"] == reports.TOPIC
        assert utc(await results.get(engine, COMPLETE_ID))["ended_at"] == COMPLETE["updated_at"]
        assert (await results.get(engine, IN_PROGRESS_ID))["ended_at"] is None
        total, listed = await reports.listing(engine)
        assert total == 2 and [r["id"] for r in listed] == [IN_PROGRESS_ID, COMPLETE_ID]

        rows = [utc(r) for r in await outbox.pending(engine)]
        renamed = {"report_id": "aggregate_id", "event": "topic"}
        delivery_ids = [r.pop("delivery_id") for r in rows]
        assert rows == [utc({renamed.get(k, k): v for k, v in old_row.items()}) for old_row in (DELIVERED, PENDING)]
        # 0003: every old row got a globally unique delivery id (receivers deduplicate on it).
        assert len(set(delivery_ids)) == 2 and all(str(uuid.UUID(d)) == d for d in delivery_ids)

        # New rows number on after the copied ids, and the unique (topic, aggregate) still holds.
        async with engine.begin() as conn:
            assert await outbox.enqueue(conn, topic="survey", aggregate_id="r1", payload={"n": 1})
            assert not await outbox.enqueue(conn, topic="claim_report", aggregate_id=COMPLETE_ID, payload={})
        after = await outbox.pending(engine)
        assert after[-1]["id"] > PENDING["id"]
        assert after[-1]["delivery_id"] not in delivery_ids and uuid.UUID(after[-1]["delivery_id"])
    finally:
        await engine.dispose()


async def test_an_empty_database_is_built_to_head_and_upgrading_again_does_nothing(test_database):
    engine = create_engine(test_database)
    try:
        assert (await migrate.state(engine)).word == "empty"
        assert await migrate.upgrade(engine) == migrate.head_revision()
        assert await migrate.upgrade(engine) == migrate.head_revision()
        found = await migrate.state(engine)
        assert (found.current, found.word, found.stamped) == (migrate.head_revision(), "head", True)
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert tables == {"alembic_version", "calls", "transcript_segments", "policies", "flow_results", "outbox",
                          "instances", "provider_tokens",  # 0004
                          "reminders", "reminder_receipts", "reminder_events", "opt_outs", "claim_documents",
                          "campaign_states",  # 0005
                          "survey_invitations", "survey_sessions", "survey_otps", "survey_identity_failures",
                          "survey_submissions", "survey_events"}  # 0006
    finally:
        await engine.dispose()


async def test_two_gateways_upgrading_at_once_migrate_once(test_database, caplog):
    await build_old_database(test_database)
    engines = [create_engine(test_database), create_engine(test_database)]
    caplog.set_level(logging.INFO, logger="alembic")
    try:
        if engines[0].dialect.name == "postgresql":
            # Concurrent: the second waits on the advisory lock, then finds the schema at head.
            ends = await asyncio.gather(*(migrate.upgrade(e) for e in engines))
        else:
            # SQLite serves one gateway process: upgrading again must be a no-op.
            ends = [await migrate.upgrade(e) for e in engines]
        assert ends == [migrate.head_revision()] * 2
        applied = [r.getMessage() for r in caplog.records if "Running upgrade 0001 -> 0002" in r.getMessage()]
        assert len(applied) == 1, applied
        total, _ = await reports.listing(engines[0])
        assert total == 2 and len(await outbox.pending(engines[0])) == 2
    finally:
        for engine in engines:
            await engine.dispose()


def _cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GATEWAY_DATABASE_URL": url, "GATEWAY_SETTINGS": str(ROOT / "config" / "settings.toml")}
    env.pop("GATEWAY_DB_AUTO_UPGRADE", None)
    return subprocess.run([sys.executable, "-m", "gateway", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


async def test_db_current_and_db_upgrade_on_the_command_line(test_database):
    assert _cli(test_database, "db", "current").stdout.strip() == "- empty"
    await build_old_database(test_database)
    current = _cli(test_database, "db", "current")
    assert current.returncode == 0 and current.stdout.strip().startswith("0001 behind"), current

    upgraded = _cli(test_database, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == f"{migrate.head_revision()} head (upgraded from 0001)"
    assert _cli(test_database, "db", "current").stdout.strip() == f"{migrate.head_revision()} head"
    assert _cli(test_database, "db", "upgrade").stdout.strip() == f"{migrate.head_revision()} head (nothing to do)"


async def test_serve_without_auto_upgrade_refuses_an_old_schema_in_one_line(test_database):
    await build_old_database(test_database)
    env_url = test_database
    refused = subprocess.run(
        [sys.executable, "-m", "gateway", "serve"], capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "GATEWAY_DATABASE_URL": env_url, "GATEWAY_DB_AUTO_UPGRADE": "false"},
    )
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "gateway db upgrade" in lines[0] and "0001" in lines[0], refused.stderr
    engine = create_engine(test_database)
    try:
        assert (await migrate.state(engine)).current == "0001"  # refused, not migrated
    finally:
        await engine.dispose()


async def test_the_app_upgrades_at_start_unless_told_not_to(make_settings, test_database):
    import pytest

    from conftest import running_gateway
    from gateway.app import create_app

    await build_old_database(test_database)
    app = create_app(make_settings(db_auto_upgrade=False))
    with pytest.raises(migrate.SchemaOutOfDate, match="gateway db upgrade"):
        async with app.router.lifespan_context(app):
            pass
    engine = create_engine(test_database)
    try:
        assert (await migrate.state(engine)).current == "0001"
        with running_gateway(make_settings()):  # auto-upgrade: migrates, then serves
            assert (await migrate.state(engine)).word == "head"
        with running_gateway(make_settings(db_auto_upgrade=False)):  # at head: starts
            assert (await reports.listing(engine))[0] == 2
    finally:
        await engine.dispose()


async def test_a_schema_newer_than_the_code_is_refused_not_guessed_at(test_database):
    import pytest
    from sqlalchemy import text

    engine = create_engine(test_database)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        assert (await migrate.state(engine)).describe() == "0099 unknown"
        with pytest.raises(migrate.SchemaOutOfDate, match="0099"):
            await migrate.upgrade(engine)
        with pytest.raises(migrate.SchemaOutOfDate, match="0099"):
            await migrate.prepare(engine, auto_upgrade=False)
    finally:
        await engine.dispose()


async def test_two_db_upgrade_processes_at_once_migrate_once(test_database):
    await build_old_database(test_database)
    env = {**os.environ, "GATEWAY_DATABASE_URL": test_database}
    procs = [subprocess.Popen([sys.executable, "-m", "gateway", "db", "upgrade"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outcomes
    assert sorted(out.strip() for out, _ in outcomes) == [f"{migrate.head_revision()} head (nothing to do)",
                                                          f"{migrate.head_revision()} head (upgraded from 0001)"]
    engine = create_engine(test_database)
    try:
        assert (await reports.listing(engine))[0] == 2 and len(await outbox.pending(engine)) == 2
    finally:
        await engine.dispose()


async def _upgrade_to(engine, revision: str) -> None:
    """Alembic to one revision (not head), as `migrate` runs it: one transaction, SQLite's write lock."""
    from alembic import command

    async with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        await conn.run_sync(lambda sync: command.upgrade(migrate._config(sync), revision))
        await conn.commit()


async def test_a_database_at_0005_with_rows_upgrades_to_0006_and_back(test_database):
    """0006 (surveys) adds the survey tables and two policy columns; every 0005 row stays as it was."""
    from alembic import command
    from sqlalchemy import text

    engine = create_engine(test_database)
    try:
        await _upgrade_to(engine, "0005")
        assert (await migrate.state(engine)).current == "0005"
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO policies (policy_number, product, holder_name, insured_name, insured_id_number, phone, "
                "start_date, expiry_date, updated_at, wechat_openid, consent_sms) VALUES "
                "('P100', '医疗险', '张伟', '张伟', '11010519491231002X', '13800138000', '2025-01-01', '2026-12-31', "
                ":at, 'oX1', :yes)"), {"at": T0, "yes": True})
            await conn.execute(text(
                "INSERT INTO campaign_states (campaign, paused, updated_at) VALUES ('survey', :no, :at)"),
                {"no": False, "at": T0})
        assert await migrate.upgrade(engine) == migrate.head_revision()
        async with engine.connect() as conn:
            row = dict((await conn.execute(select(policies))).mappings().one())
            assert (row["policy_number"], row["wechat_openid"], row["consent_sms"], row["receipt_date"],
                    row["holder_id_number"]) == ("P100", "oX1", True, None, None)
            assert row["expiry_date"] == date(2026, 12, 31)
            assert (await conn.execute(text("SELECT paused FROM campaign_states"))).scalar_one() in (False, 0)
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            assert {"survey_invitations", "survey_events", "survey_submissions"} <= tables
            indexes = {i["name"] for i in await conn.run_sync(lambda c: inspect(c).get_indexes("survey_invitations"))}
            assert {"ix_survey_invitations_policy", "ix_survey_invitations_open"} <= indexes
        # The new columns take values; down again drops the survey tables and keeps the policy.
        async with engine.begin() as conn:
            await conn.execute(policies.update().values(receipt_date=date(2026, 11, 28)))
            await conn.execute(text("INSERT INTO survey_invitations (id, survey, survey_version, survey_hash, "
                                    "policy_number, holder_key, channel, phone, token_salt, token_hash, status, "
                                    "problem, problems, answers, context, flags, deadline, created_at, updated_at) "
                                    "VALUES ('i1', 's', '1', 'h', 'P100', 'k', 'sms', '1', 'aa', 'th', 'issued', "
                                    ":no, '[]', '{}', '{}', '[]', :at, :at, :at)"), {"no": False, "at": T0})
        async with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            await conn.run_sync(lambda sync: command.downgrade(migrate._config(sync), "0005"))
            await conn.commit()
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            assert "survey_invitations" not in tables
            assert (await conn.execute(text("SELECT policy_number FROM policies"))).scalars().all() == ["P100"]
    finally:
        await engine.dispose()
