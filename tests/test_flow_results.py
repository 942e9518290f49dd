"""One store for every flow's results: saved turn by turn, queried by subject and time, delivered once, masked."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx

from conftest import ROOT, running_gateway
from gateway.storage import migrate, outbox, reports, results
from gateway.storage.database import create_engine
from speech.dialogue.flow import load_flows

SURVEY = dict(flow="satisfaction_survey", caller_number="13900139000", details={}, transcript=[])


async def _engine(url: str):
    engine = create_engine(url)
    await migrate.upgrade(engine)
    return engine


async def test_a_result_is_saved_per_turn_and_queued_once_when_final(test_database):
    engine = await _engine(test_database)
    try:
        common = dict(SURVEY, result_id="r1", call_id="c1", topic="survey_result")
        assert not await results.save(engine, status="in_progress", slots={"score": "4"}, **common)
        assert await outbox.pending(engine) == []
        assert (await results.get(engine, "r1"))["ended_at"] is None

        assert await results.save(engine, status="problem", slots={"score": "2"}, policy_number="P7",
                                  final_statuses={"problem", "complete"}, **common)
        assert not await results.save(engine, status="problem", slots={"score": "2"}, policy_number="P7",
                                      final_statuses={"problem", "complete"}, **common)
        stored = await results.get(engine, "r1")
        assert stored["status"] == "problem" and stored["slots"] == {"score": "2"} and stored["ended_at"] is not None
        assert stored["topic"] == "survey_result" and stored["subject_phone"] == "13900139000"
        [row] = await outbox.pending(engine)
        assert (row["topic"], row["aggregate_id"], row["delivered_at"]) == ("survey_result", "r1", None)
        assert row["payload"]["event"] == "survey_result" and row["payload"]["result_id"] == "r1"
        assert row["payload"]["status"] == "problem" and row["payload"]["policy_number"] == "P7"
    finally:
        await engine.dispose()


async def test_claim_flows_keep_the_claim_topic_and_body(test_database):
    engine = await _engine(test_database)
    try:
        # the claim flows say so in their YAML (`result.topic`); their results are claim reports
        flows = load_flows(ROOT / "config" / "flows")
        assert {flows[name].topic for name in ("claim_report", "claim_status_callback")} == {"claim_report"}
        delivery = reports.delivery_for(flows["claim_status_callback"].topic, ("complete", "partial", "transferred"))
        assert delivery.topic == "claim_report" and delivery.final_statuses == {"complete", "partial", "transferred"}
        assert reports.delivery_for("satisfaction_survey").topic == "satisfaction_survey"
        await results.save(engine, result_id="c" * 32, call_id="call-9", flow="claim_status_callback",
                           status="transferred", caller_number="13800138000", slots={"reporter_name": "王芳"},
                           details={}, transcript=[], policy_number=None, topic=delivery.topic,
                           final_statuses=delivery.final_statuses, payload=delivery.payload)
        [row] = await outbox.pending(engine)
        assert row["topic"] == "claim_report"
        assert list(row["payload"]) == ["event", "report_id", "call_id", "flow", "status", "caller_number",
                                        "policy_number", "slots", "details", "transcript", "created_at"]
        assert row["payload"]["event"] == "claim_report" and row["payload"]["report_id"] == "c" * 32
        total, listed = await reports.listing(engine, status="transferred")
        assert total == 1 and listed[0]["flow"] == "claim_status_callback"
    finally:
        await engine.dispose()


async def test_results_are_queried_by_flow_status_subject_and_time(test_database):
    engine = await _engine(test_database)
    try:
        for n in range(5):
            await results.save(engine, result_id=f"s{n}", call_id=f"c{n}", status="complete" if n % 2 else "refused",
                               slots={}, policy_number=f"P{n % 2}", **SURVEY)
        await results.save(engine, result_id="other", call_id="cx", flow="payment_reminder", status="complete",
                           caller_number=None, subject_phone="13700137000", slots={}, details={}, transcript=[])
        total, rows = await results.query(engine, flow="satisfaction_survey", limit=2, offset=1)
        assert total == 5 and [r["id"] for r in rows] == ["s3", "s2"]
        assert (await results.query(engine, status="refused"))[0] == 3
        assert [r["id"] for r in (await results.query(engine, policy_number="P1"))[1]] == ["s3", "s1"]
        assert [r["id"] for r in (await results.query(engine, phone="13700137000"))[1]] == ["other"]
        assert (await results.query(engine, phone="13900139000"))[0] == 5
        now = datetime.now(timezone.utc)
        assert (await results.query(engine, since=now - timedelta(minutes=5)))[0] == 6
        assert (await results.query(engine, until=now - timedelta(minutes=5)))[0] == 0
        assert (await reports.listing(engine))[0] == 0  # no claim flow among them
    finally:
        await engine.dispose()


async def test_results_api_filters_and_masks_without_pii_scope(make_settings, test_database):
    settings = make_settings(api_keys=("ops", "auditor"), pii_api_keys=("auditor",))
    with running_gateway(settings) as address:
        engine = create_engine(test_database)
        try:
            await results.save(
                engine, result_id="v1", call_id="call-v1", flow="visit_survey", status="complete",
                caller_number="13900139000", policy_number="P55",
                slots={"customer_name": "赵敏", "contact_phone": "13812345678", "comment": "请打13812345678", "score": "5"},
                details={"customer_name": {"value": "赵敏", "confidence": 0.9, "source": "speech", "turn": 1}},
                transcript=[{"speaker": "bot", "text": "您贵姓？"}, {"speaker": "caller", "text": "我姓赵"}],
            )
            await results.save(engine, result_id="v2", call_id="call-v2", flow="visit_survey", status="in_progress",
                               slots={}, **{k: v for k, v in SURVEY.items() if k != "flow"})
        finally:
            await engine.dispose()
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            assert (await client.get("/api/results")).status_code == 401
            ops, auditor = {"Authorization": "Bearer ops"}, {"Authorization": "Bearer auditor"}
            listing = (await client.get("/api/results", params={"flow": "visit_survey", "status": "complete"},
                                        headers=ops)).json()
            assert listing["total"] == 1
            masked = listing["results"][0]
            assert masked["result_id"] == "v1" and masked["pii_masked"] is True and masked["topic"] == "visit_survey"
            assert masked["slots"] == {"customer_name": "赵*", "contact_phone": "138******78",
                                       "comment": "请打138******78", "score": "5"}
            assert masked["details"]["customer_name"]["value"] == "赵*"
            assert masked["caller_number"] == "139******00" and masked["policy_number"] == "P55"
            assert [t["text"] for t in masked["transcript"]] == ["您贵姓？", "(masked)"]
            assert masked["ended_at"] is not None

            full = (await client.get("/api/results/v1", headers=auditor)).json()
            assert full["slots"]["contact_phone"] == "13812345678" and full["transcript"][1]["text"] == "我姓赵"
            by_phone = (await client.get("/api/results", params={"phone": "13900139000"}, headers=ops)).json()
            assert by_phone["total"] == 2
            page = (await client.get("/api/results", params={"limit": 1, "offset": 1}, headers=ops)).json()
            assert page["total"] == 2 and [r["result_id"] for r in page["results"]] == ["v1"]
            assert (await client.get("/api/results", params={"policy_number": "P55"}, headers=ops)).json()["total"] == 1
            assert (await client.get("/api/results", params={"since": "soon"}, headers=ops)).status_code == 400
            assert (await client.get("/api/results/nope", headers=ops)).status_code == 404
            # Not a claim flow: the claims API does not list it.
            assert (await client.get("/api/reports", headers=ops)).json()["total"] == 0
            assert (await client.get("/api/reports/v1", headers=ops)).status_code == 404


async def test_the_claim_report_save_of_old_still_stores_and_queues_a_claim(test_database):
    engine = await _engine(test_database)
    try:
        assert await reports.save(engine, report_id="e" * 32, call_id="call-e", flow="claim_report", status="partial",
                                  caller_number="13800138000", slots={"reporter_name": "周杰"}, details={},
                                  transcript=[])
        [row] = await outbox.pending(engine)
        assert (row["topic"], row["payload"]["report_id"], row["payload"]["status"]) == ("claim_report", "e" * 32, "partial")
        assert (await reports.get(engine, "e" * 32))["slots"] == {"reporter_name": "周杰"}
    finally:
        await engine.dispose()
