"""The survey cases in the database (gateway/storage/surveys.py) on SQLite and PostgreSQL: invitations
made idempotently, sessions, one-time codes and their limits, the identity check and its lock, answers
page by page recorded once, completion (outcome, problems, signals, outbox rows) once even when two
requests race, contact requests, voice answers, expiry, revocation, and the audit chain."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from surveys import tokens
from surveys.products import deadline as cooling_off_deadline

from gateway.storage import migrate, outbox, policies
from gateway.storage import surveys as store
from gateway.storage.database import (
    create_engine, outbox as outbox_table, survey_events, survey_invitations, survey_submissions,
)

from survey_cases import (
    BASE, IDS, KEY, POLICY, T0, UA, ZONE, add_policies, answer_all, catalog, invite, policy_rows, survey, token_of,
    verified_session,
)


@pytest.fixture
async def engine(test_database):
    engine = create_engine(test_database)
    await migrate.upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def cases(engine, tmp_path):
    """Six policies imported; the catalog of the test survey."""
    await add_policies(engine, policy_rows(6))
    return catalog(tmp_path)


async def outbox_rows(engine, topic: str | None = None) -> list[dict]:
    async with engine.connect() as conn:
        query = select(outbox_table).order_by(outbox_table.c.id)
        if topic:
            query = query.where(outbox_table.c.topic == topic)
        return [dict(r._mapping) for r in (await conn.execute(query)).all()]


async def kinds(engine, invitation_id: str) -> list[str]:
    return [e["kind"] for e in await store.events(engine, invitation_id)]


# Invitations -------------------------------------------------------------------

async def test_invitations_are_made_once_per_policy_and_survey_with_the_same_link_again(engine, cases):
    first = await invite(engine, cases, ["P001", "P002"])
    again = await invite(engine, cases, ["P001", "P002"])
    assert [i["id"] for i in first] == [i["id"] for i in again] and [i["url"] for i in first] == [i["url"] for i in again]
    assert [i["created"] for i in first] == [True, True] and [i["created"] for i in again] == [False, False]
    assert all(i["status"] == "issued" and i["url"].startswith(BASE + "/s/") for i in first)
    token = token_of(first[0]["url"])
    assert len(token) == tokens.TOKEN_LENGTH and tokens.well_formed(token, KEY)
    found = await store.invitation_by_token(engine, token)
    assert found["id"] == first[0]["id"] and found["policy_number"] == "P001"
    # Stored: the salt and the token's hash, never the token.
    assert token not in str(found) and found["token_hash"] == tokens.token_hash(token)
    # The deadline: the end of the product's cooling-off period from the receipt date (WL20: 20 days).
    assert found["deadline"] == cooling_off_deadline(date(2026, 11, 28), 20, ZONE)
    assert first[0]["deadline"] == found["deadline"].astimezone(timezone.utc).isoformat()
    assert found["context"]["payment_years"] == 20 and found["context"]["product_name"] == "终身寿险"
    assert found["context"]["holder_name_masked"] == "张*"
    assert (found["survey_version"], found["survey_hash"]) == ("1", survey().hash)
    assert await kinds(engine, found["id"]) == ["invited"]
    assert await store.invitation_by_token(engine, "A" * 15) is None


async def test_each_bad_item_gets_its_own_error_and_the_rest_are_made(engine, cases):
    await add_policies(engine, [{**policy_rows(1)[0], "policy_number": "OLD", "receipt_date": "2026-10-01"}])
    await policies.upsert(engine, [{**policy_rows(1)[0], "policy_number": "NORECEIPT", "receipt_date": ""}])
    items = await store.create_invitations(engine, survey(), cases, [
        {"policy_number": "P001", "channel": "wechat"}, {"policy_number": "NOPE", "channel": "sms"},
        {"policy_number": "P002", "channel": "fax"}, {"channel": "sms"}, "P003",
        {"policy_number": "NORECEIPT", "channel": "sms"}, {"policy_number": "OLD", "channel": "sms"},
        {"policy_number": "P001", "channel": "sms"}],
        key=KEY, base_url=BASE, now=T0, zone=ZONE)
    assert len(items) == 8
    assert items[0]["channel"] == "wechat" and "error" not in items[0]
    assert "no policy NOPE" in items[1]["error"]
    assert "channel 'fax' is not one of sms, wechat, voice" in items[2]["error"]
    assert "policy_number is missing" in items[3]["error"]
    assert "expected an object" in items[4]["error"]
    assert "receipt_date (回执日期)" in items[5]["error"]
    assert "cooling-off period of policy OLD ended" in items[6]["error"]
    # The same policy twice in one batch: one case (its first channel).
    assert items[7]["id"] == items[0]["id"] and items[7]["channel"] == "wechat"
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(survey_invitations))).scalar_one() == 1


async def test_two_identical_batches_at_once_make_one_case_each(engine, cases):
    results = await asyncio.gather(*(invite(engine, cases, ["P001", "P002", "P003"]) for _ in range(3)))
    assert len({tuple(i["id"] for i in r) for r in results}) == 1
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(survey_invitations))).scalar_one() == 3
        invited = (await conn.execute(select(func.count()).select_from(survey_events)
                                      .where(survey_events.c.kind == "invited"))).scalar_one()
    assert invited == 3


async def test_the_policy_import_takes_the_receipt_date_and_the_holders_id_number(engine):
    text = ("policy_number,product,holder_name,insured_name,insured_id_number,phone,start_date,expiry_date,"
            "receipt_date,holder_id_number\n"
            f"P9,WL20,张伟,张小明,{IDS[1]},13800138009,2026-11-20,2046-11-19,2026-11-28,{IDS[0].lower()}\n"
            f"P10,WL20,张伟,张伟,{IDS[1]},13800138009,,,28/11/2026,\n")
    rows, errors = policies.parse_csv(text, T0.date())
    assert errors == [{"row": 3, "error": "receipt_date '28/11/2026' is not a date (YYYY-MM-DD)"}]
    await policies.upsert(engine, rows)
    async with engine.connect() as conn:
        row = (await conn.execute(select(policies.policies).where(policies.policies.c.policy_number == "P9"))
               ).mappings().one()
    assert row["receipt_date"] == date(2026, 11, 28) and row["holder_id_number"] == IDS[0]
    assert store.holder_id(row) == IDS[0]


# Sessions, codes, identity ----------------------------------------------------------

async def test_the_first_visit_opens_the_case_and_sessions_expire_when_idle(engine, cases):
    (item,) = await invite(engine, cases, ["P001"])
    cookie, session = await store.open_session(engine, item["id"], now=T0, client_ip="203.0.113.7", user_agent=UA,
                                               ttl_s=600)
    await store.open_session(engine, item["id"], now=T0 + timedelta(minutes=1), client_ip="203.0.113.7",
                             user_agent=UA, ttl_s=600)
    assert (await store.get(engine, item["id"]))["status"] == "opened"
    assert await kinds(engine, item["id"]) == ["invited", "opened", "session_started", "session_started"]
    found = await store.session_by_cookie(engine, cookie, T0 + timedelta(minutes=9))
    assert found["id"] == session["id"] and found["csrf_token"] == session["csrf_token"]
    # Each use extends it: idle 9 minutes, then 9 more is still inside the 10.
    assert (await store.session_by_cookie(engine, cookie, T0 + timedelta(minutes=18)))["id"] == session["id"]
    assert await store.session_by_cookie(engine, cookie, T0 + timedelta(minutes=29)) is None
    assert await store.session_by_cookie(engine, "forged", T0) is None
    assert cookie not in str(found)  # kept hashed


async def test_codes_are_limited_per_minute_and_hour_and_the_sms_id_is_on_the_trail(engine, cases):
    (item,) = await invite(engine, cases, ["P002"])
    _, session = await store.open_session(engine, item["id"], now=T0, client_ip="198.51.100.1", user_agent=UA,
                                          ttl_s=1800)
    first = await store.issue_code(engine, item["id"], session["id"], policy=POLICY, now=T0)
    code, refusal = first
    assert refusal is None and len(code) == 6 and code.isdigit() and first.otp_id
    await store.code_sent(engine, first.otp_id, "aliyun-biz-1", T0)
    assert await store.issue_code(engine, item["id"], session["id"], policy=POLICY, now=T0 + timedelta(seconds=30)) \
        == (None, "wait_minute")
    for minute in range(1, 5):
        assert (await store.issue_code(engine, item["id"], session["id"], policy=POLICY,
                                       now=T0 + timedelta(minutes=minute, seconds=1))).refusal is None
    assert (await store.issue_code(engine, item["id"], session["id"], policy=POLICY,
                                   now=T0 + timedelta(minutes=6))).refusal == "hour_limit"
    assert (await store.issue_code(engine, item["id"], session["id"], policy=POLICY,
                                   now=T0 + timedelta(minutes=61))).refusal is None
    trail = await store.events(engine, item["id"])
    sent = [e for e in trail if e["kind"] == "otp_sent"]
    assert len(sent) == 1 and sent[0]["data"]["provider_id"] == "aliyun-biz-1"
    assert [e["data"]["reason"] for e in trail if e["kind"] == "otp_refused"] == ["wait_minute", "hour_limit"]


async def test_the_identity_check_needs_the_id_suffix_and_the_newest_live_code_and_locks_after_five_wrong(engine, cases):
    (item,) = await invite(engine, cases, ["P001"])
    _, session = await store.open_session(engine, item["id"], now=T0, client_ip="198.51.100.2", user_agent=UA,
                                          ttl_s=1800)
    sid = session["id"]
    assert await store.verify_identity(engine, item["id"], sid, id_suffix="002X", code="123456", policy=POLICY,
                                       now=T0) == "expired_code"
    code, _ = await store.issue_code(engine, item["id"], sid, policy=POLICY, now=T0)
    assert await store.verify_identity(engine, item["id"], sid, id_suffix="1234", code=code, policy=POLICY,
                                       now=T0) == "wrong"
    wrong_code = "000000" if code != "000000" else "111111"
    for _ in range(3):
        assert await store.verify_identity(engine, item["id"], sid, id_suffix="002x", code=wrong_code, policy=POLICY,
                                           now=T0) == "wrong"
    assert await store.verify_identity(engine, item["id"], sid, id_suffix="002x", code=wrong_code, policy=POLICY,
                                       now=T0) == "locked"
    # Locked: even the right code fails, and no new code is sent, for an hour.
    assert await store.verify_identity(engine, item["id"], sid, id_suffix="002X", code=code, policy=POLICY,
                                       now=T0 + timedelta(minutes=10)) == "locked"
    assert (await store.issue_code(engine, item["id"], sid, policy=POLICY,
                                   now=T0 + timedelta(minutes=10))).refusal == "locked"
    later = T0 + timedelta(hours=1, minutes=1)
    code, _ = await store.issue_code(engine, item["id"], sid, policy=POLICY, now=later)
    assert await store.verify_identity(engine, item["id"], sid, id_suffix="002x", code=code, policy=POLICY,
                                       now=later + timedelta(minutes=6)) == "expired_code"  # the code lives 5 min
    code, _ = await store.issue_code(engine, item["id"], sid, policy=POLICY, now=later + timedelta(minutes=7))
    assert await store.verify_identity(engine, item["id"], sid, id_suffix="002x", code=code, policy=POLICY,
                                       now=later + timedelta(minutes=8)) == "passed"
    case = await store.get(engine, item["id"])
    assert case["status"] == "verified" and case["verified_at"] == later + timedelta(minutes=8)
    # A used code does not pass twice.
    assert await store.verify_identity(engine, item["id"], sid, id_suffix="002x", code=code, policy=POLICY,
                                       now=later + timedelta(minutes=9)) == "expired_code"
    trail = await kinds(engine, item["id"])
    assert trail.count("identity_failed") == 9 and trail.count("locked") == 1 and trail.count("identity_passed") == 1


async def test_the_policyholders_id_number_is_checked_when_it_is_not_the_insureds(engine, cases):
    await add_policies(engine, [{**policy_rows(1)[0], "policy_number": "H1", "holder_id_number": IDS[3]}])
    (item,) = await invite(engine, cases, ["H1"])
    _, session = await store.open_session(engine, item["id"], now=T0, client_ip=None, user_agent=None, ttl_s=60)
    code, _ = await store.issue_code(engine, item["id"], session["id"], policy=POLICY, now=T0)
    assert await store.verify_identity(engine, item["id"], session["id"], id_suffix=IDS[0][-4:], code=code,
                                       policy=POLICY, now=T0) == "wrong"
    assert await store.verify_identity(engine, item["id"], session["id"], id_suffix=IDS[3][-4:], code=code,
                                       policy=POLICY, now=T0) == "passed"


# Answers and completion ------------------------------------------------------------

async def test_answers_need_a_verified_session_and_a_page_posted_twice_is_recorded_once(engine, cases):
    (item,) = await invite(engine, cases, ["P001"])
    _, unverified = await store.open_session(engine, item["id"], now=T0, client_ip=None, user_agent=None, ttl_s=600)
    with pytest.raises(store.NotVerified):
        await store.save_page(engine, item["id"], unverified["id"], page="identity", answers={"self_signed": True},
                              submission_key="s1", now=T0)
    session = await verified_session(engine, item["id"], IDS[0])
    assert await store.save_page(engine, item["id"], session["id"], page="identity", answers={"self_signed": True},
                                 submission_key="s1", now=T0 + timedelta(seconds=40))
    assert not await store.save_page(engine, item["id"], session["id"], page="identity",
                                     answers={"self_signed": False}, submission_key="s1", now=T0 + timedelta(seconds=41))
    assert (await store.get(engine, item["id"]))["answers"] == {"self_signed": True}
    with pytest.raises(store.Incomplete):
        await store.complete(engine, item["id"], survey(), now=T0 + timedelta(seconds=50))
    # Back to the first page, a new form: the newer answer counts.
    assert await store.save_page(engine, item["id"], session["id"], page="identity", answers={"self_signed": False},
                                 submission_key="s2", now=T0 + timedelta(seconds=60))
    assert (await store.get(engine, item["id"]))["answers"] == {"self_signed": False}
    assert (await kinds(engine, item["id"])).count("answers") == 2


async def test_a_double_tap_at_once_is_recorded_once(engine, cases):
    (item,) = await invite(engine, cases, ["P001"])
    session = await verified_session(engine, item["id"], IDS[0])
    saved = await asyncio.gather(*(store.save_page(engine, item["id"], session["id"], page="identity",
                                                   answers={"self_signed": True}, submission_key="tap",
                                                   now=T0 + timedelta(minutes=1)) for _ in range(4)))
    assert sorted(saved) == [False, False, False, True]
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(survey_submissions))).scalar_one() == 1
    assert (await kinds(engine, item["id"])).count("answers") == 1


async def test_completion_stores_the_outcome_once_and_queues_the_result(engine, cases):
    (item,) = await invite(engine, cases, ["P001"])
    session = await verified_session(engine, item["id"], IDS[0])
    await answer_all(engine, item["id"], session["id"], now=T0 + timedelta(minutes=1))
    done = await store.complete(engine, item["id"], survey(), now=T0 + timedelta(minutes=2))
    assert (done["status"], done["outcome"], done["problem"], done["problems"], done["flags"]) == \
        ("completed", "success", False, [], [])
    assert done["seconds"] == pytest.approx(100.0)  # identity passed at T0+20s, completed at T0+120s
    assert await store.complete(engine, item["id"], survey(), now=T0 + timedelta(minutes=5)) == done
    (result,) = await outbox_rows(engine, store.TOPIC_RESULT)
    assert result["aggregate_id"] == item["id"]
    payload = result["payload"]
    assert (payload["event"], payload["outcome"], payload["inside_cooling_off"], payload["answers"]) == \
        ("survey_result", "success", True, {"self_signed": True, "knows_cooling_off": "yes"})
    assert payload["survey_hash"] == survey().hash and payload["policy_number"] == "P001"
    assert await outbox_rows(engine, store.TOPIC_PROBLEM) == []
    assert (await kinds(engine, item["id"]))[-1] == "completed"
    # After completion nothing more is answered.
    with pytest.raises(store.InvitationClosed, match="completed"):
        await store.save_page(engine, item["id"], session["id"], page="terms", answers={"knows_cooling_off": "no"},
                              submission_key="late", now=T0 + timedelta(minutes=6))


async def test_two_completions_at_once_complete_once(engine, cases):
    (item,) = await invite(engine, cases, ["P001"])
    session = await verified_session(engine, item["id"], IDS[0])
    await answer_all(engine, item["id"], session["id"], now=T0 + timedelta(minutes=1), good=False)
    results = await asyncio.gather(*(store.complete(engine, item["id"], survey(), now=T0 + timedelta(minutes=2))
                                     for _ in range(4)))
    assert all(r == results[0] for r in results) and results[0]["outcome"] == "problem"
    assert (await kinds(engine, item["id"])).count("completed") == 1
    assert len(await outbox_rows(engine, store.TOPIC_RESULT)) == 1
    (problem,) = await outbox_rows(engine, store.TOPIC_PROBLEM)
    assert problem["payload"]["problems"] == [{"question": "knows_cooling_off", "expected": "yes", "given": "no"}]
    # Due one working day later (Tuesday -> Wednesday, same time), well before the deadline.
    assert problem["payload"]["due_at"] == (T0 + timedelta(days=1, minutes=2)).astimezone(timezone.utc).isoformat()
    assert store.verify_chain(await store.events(engine, item["id"])) is None


def test_a_follow_up_is_due_one_working_day_later_but_two_days_before_the_deadline_at_the_latest():
    friday = datetime(2026, 12, 4, 16, 0, tzinfo=ZONE)
    far = datetime(2026, 12, 31, 23, 59, tzinfo=ZONE)
    assert store.follow_up_due(friday, far, ZONE) == datetime(2026, 12, 7, 16, 0, tzinfo=ZONE)  # Monday
    near = datetime(2026, 12, 6, 23, 59, tzinfo=ZONE)
    assert store.follow_up_due(friday, near, ZONE) == near - timedelta(days=2)
    assert store.follow_up_due(friday, datetime(2026, 12, 5, 12, 0, tzinfo=ZONE), ZONE) == friday  # at once


async def test_answers_given_too_fast_or_from_one_device_for_many_policyholders_are_flagged(engine, cases):
    items = await invite(engine, cases, ["P001", "P002", "P003", "P004", "P005"])
    # One phone (address and user agent) for five policyholders; the limit is three.
    for n, item in enumerate(items):
        start = T0 + timedelta(minutes=10 * n)
        session = await verified_session(engine, item["id"], IDS[n], now=start, ip="192.0.2.50")
        await answer_all(engine, item["id"], session["id"], now=start + timedelta(minutes=1))
        await store.complete(engine, item["id"], survey(), now=start + timedelta(minutes=2))
    flags = [sorted((await store.get(engine, i["id"]))["flags"]) for i in items]
    # The fourth completion crossed the limit: it and the three before it on that device are flagged.
    assert flags == [["shared_address", "shared_device"]] * 5
    assert "flagged" in await kinds(engine, items[0]["id"])
    # Too fast: two questions answered 2 s after the identity check (2 s a question is the minimum).
    await add_policies(engine, [{**policy_rows(1)[0], "policy_number": "FAST"}])
    (fast,) = await invite(engine, cases, ["FAST"])
    session = await verified_session(engine, fast["id"], IDS[0], ip="198.51.100.99")
    await answer_all(engine, fast["id"], session["id"], now=T0 + timedelta(seconds=21))
    done = await store.complete(engine, fast["id"], survey(), now=T0 + timedelta(seconds=22))
    assert done["flags"] == ["too_fast"]


async def test_a_contact_request_makes_one_follow_up_task(engine, cases):
    (item,) = await invite(engine, cases, ["P002"])
    assert await store.request_contact(engine, item["id"], now=T0, page="terms", note="请下午打 13912345678")
    assert not await store.request_contact(engine, item["id"], now=T0 + timedelta(minutes=1), page="terms")
    (task,) = await outbox_rows(engine, store.TOPIC_FOLLOWUP)
    assert task["payload"]["page"] == "terms" and task["payload"]["phone"] == "13800138001"
    assert task["payload"]["due_at"] == (T0 + timedelta(days=1)).astimezone(timezone.utc).isoformat()
    assert (await store.get(engine, item["id"]))["contact_requested_at"] == T0


async def test_voice_answers_complete_the_case_once_and_an_unverified_call_only_records_the_call(engine, cases):
    (item,) = await invite(engine, cases, ["P003"], channel="voice")
    got = await store.record_voice_answers(engine, item["id"], survey(), answers={"self_signed": True},
                                           identity_passed=False, result_id="r-1", now=T0)
    assert got == {"id": item["id"], "status": "issued", "completed": False}
    assert (await store.get(engine, item["id"]))["answers"] == {}
    answers = {"self_signed": True, "knows_cooling_off": "yes"}
    done = await store.record_voice_answers(engine, item["id"], survey(), answers=answers, identity_passed=True,
                                            result_id="r-2", now=T0 + timedelta(minutes=3), seconds=75.0)
    assert (done["status"], done["outcome"], done["source"], done["seconds"]) == ("completed", "success", "voice", 75.0)
    again = await store.record_voice_answers(engine, item["id"], survey(), answers=answers, identity_passed=True,
                                             result_id="r-2", now=T0 + timedelta(minutes=4))
    assert again == done
    trail = await kinds(engine, item["id"])
    assert trail == ["invited", "voice_call", "identity_failed", "voice_call", "identity_passed", "voice_answers",
                     "completed"]
    voice = [e for e in await store.events(engine, item["id"]) if e["kind"] == "voice_answers"]
    assert voice[0]["data"]["result_id"] == "r-2"


# Expiry, revocation, the chain --------------------------------------------------------

async def test_past_the_deadline_open_cases_expire_outside_the_cooling_off_period(engine, cases):
    items = await invite(engine, cases, ["P001", "P002", "P003"])
    session = await verified_session(engine, items[2]["id"], IDS[2])
    await answer_all(engine, items[2]["id"], session["id"], now=T0 + timedelta(minutes=1))
    deadline = (await store.get(engine, items[1]["id"]))["deadline"]  # P002, P003: 15 days; P001: 20
    assert await store.expire_due(engine, deadline - timedelta(seconds=1)) == 0
    after = deadline + timedelta(seconds=1)
    # A completion after the deadline is refused: the case expires instead.
    with pytest.raises(store.InvitationClosed, match="expired"):
        await store.complete(engine, items[2]["id"], survey(), now=after)
    assert await store.expire_due(engine, after) == 1  # P002; P001's period runs longer
    for item in items[1:]:
        case = await store.get(engine, item["id"])
        assert (case["status"], case["outcome"], case["closed_at"]) == ("expired", "outside_cooling_off", after)
    assert (await store.get(engine, items[0]["id"]))["status"] == "issued"
    results = {r["aggregate_id"]: r["payload"] for r in await outbox_rows(engine, store.TOPIC_RESULT)}
    assert set(results) == {items[1]["id"], items[2]["id"]}
    assert results[items[2]["id"]]["answers"] == {"self_signed": True, "knows_cooling_off": "yes"}
    assert results[items[2]["id"]]["inside_cooling_off"] is False
    with pytest.raises(store.InvitationClosed):
        await store.open_session(engine, items[1]["id"], now=after, client_ip=None, user_agent=None, ttl_s=60)
    assert await store.expire_due(engine, after + timedelta(days=1)) == 0  # P001's period: 20 days


async def test_revoking_closes_an_open_case_once_and_never_a_completed_one(engine, cases):
    items = await invite(engine, cases, ["P001", "P002"])
    revoked = await store.revoke(engine, items[0]["id"], T0, "退保")
    assert (revoked["status"], revoked["outcome"]) == ("revoked", "not_completed")
    assert (await store.revoke(engine, items[0]["id"], T0 + timedelta(hours=1)))["closed_at"] == T0
    with pytest.raises(store.InvitationClosed):
        await store.open_session(engine, items[0]["id"], now=T0, client_ip=None, user_agent=None, ttl_s=60)
    session = await verified_session(engine, items[1]["id"], IDS[1])
    await answer_all(engine, items[1]["id"], session["id"], now=T0 + timedelta(minutes=1))
    await store.complete(engine, items[1]["id"], survey(), now=T0 + timedelta(minutes=2))
    with pytest.raises(store.InvitationClosed, match="completed"):
        await store.revoke(engine, items[1]["id"], T0 + timedelta(minutes=3))
    with pytest.raises(LookupError):
        await store.revoke(engine, "0" * 32, T0)
    trail = await store.events(engine, items[0]["id"])
    assert [e["kind"] for e in trail] == ["invited", "revoked"] and trail[1]["data"]["reason"] == "退保"
    assert len(await outbox_rows(engine, store.TOPIC_RESULT)) == 2


async def test_the_audit_chain_holds_and_names_the_first_tampered_event(engine, cases):
    (item,) = await invite(engine, cases, ["P001"])
    session = await verified_session(engine, item["id"], IDS[0])
    await store.add_event(engine, item["id"], "page_shown", {"page": "identity", "sha256": "ab" * 32},
                          now=T0 + timedelta(seconds=30), client_ip="203.0.113.7", user_agent=UA)
    await answer_all(engine, item["id"], session["id"], now=T0 + timedelta(minutes=1), remarks="<script>x</script>")
    await store.complete(engine, item["id"], survey(), now=T0 + timedelta(minutes=2))
    trail = await store.events(engine, item["id"])
    assert store.verify_chain(trail) is None and [e["seq"] for e in trail] == list(range(len(trail)))
    assert trail[0]["prev_hash"] == "0" * 64 and all(b["prev_hash"] == a["hash"] for a, b in zip(trail, trail[1:]))
    shown = next(e for e in trail if e["kind"] == "page_shown")
    assert shown["client_ip"] == "203.0.113.7" and shown["data"]["user_agent"] == UA  # the address is hashed too
    answers = next(i for i, e in enumerate(trail) if e["kind"] == "answers")
    async with engine.begin() as conn:
        await conn.execute(update(survey_events).where(survey_events.c.id == trail[answers]["id"])
                           .values(data={**trail[answers]["data"], "answers": {"self_signed": False}}))
    assert store.verify_chain(await store.events(engine, item["id"])) == answers


async def test_two_send_code_taps_at_once_send_one_code(engine, cases):
    (item,) = await invite(engine, cases, ["P001"])
    _, session = await store.open_session(engine, item["id"], now=T0, client_ip=None, user_agent=None, ttl_s=600)
    answers = await asyncio.gather(*(store.issue_code(engine, item["id"], session["id"], policy=POLICY, now=T0)
                                     for _ in range(3)))
    assert sorted(a.refusal or "" for a in answers) == ["", "wait_minute", "wait_minute"]


def test_the_link_key_is_made_once_with_owner_only_permissions_and_the_base_url_falls_back(tmp_path):
    import os
    import stat

    from gateway.settings import load_settings
    from gateway.storage.survey_service import SurveyLinks, base_url, link_key

    settings = load_settings(environ={}).replace(data_dir=str(tmp_path / "data"), host="10.0.0.5", port=8080)
    key = link_key(settings)
    path = tmp_path / "data" / "survey_link.key"
    assert len(key) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert link_key(settings) == key  # read back, not made again
    assert link_key(settings.replace(survey_link_key="a-configured-link-key")) == b"a-configured-link-key"
    with pytest.raises(ValueError, match="shorter than 16 bytes"):
        link_key(settings.replace(survey_link_key="short"))
    assert base_url(settings) == "http://10.0.0.5:8080"
    assert base_url(settings.replace(public_url="https://gw.example.cn/")) == "https://gw.example.cn"
    assert base_url(settings.replace(public_url="https://gw.example.cn", survey_base_url="https://hf.cn")) == \
        "https://hf.cn"
    links = SurveyLinks(key, "https://hf.cn")
    salt = tokens.new_salt()
    assert links.url(salt.hex()) == "https://hf.cn/s/" + tokens.make_token(key, salt)


async def test_the_shipped_new_contract_survey_completes_with_the_products_own_items(engine, tmp_path):
    """config/surveys as the gateway loads it: a participating regular-premium product asks its extra
    items; every expected answer is a success, one 'no' a problem case naming that item."""
    from gateway.settings import load_settings
    from gateway.storage.survey_service import SurveyService

    service = SurveyService.from_settings(load_settings(environ={}).replace(data_dir=str(tmp_path)))
    new_contract = service.survey("new_contract")
    await add_policies(engine, [{**policy_rows(1)[0], "policy_number": "PAR1", "product": "ENDOW_PAR10"},
                                {**policy_rows(2)[1], "policy_number": "PAR2", "product": "ENDOW_PAR10"}])
    items = await store.create_invitations(engine, new_contract, service.catalog,
                                           [{"policy_number": "PAR1"}, {"policy_number": "PAR2"}],
                                           key=service.key, base_url=service.base_url, now=T0, zone=ZONE)
    case = await store.get(engine, items[0]["id"])
    assert case["context"]["product_type"] == "participating" and case["context"]["payment"] == "regular"
    assert case["deadline"] == cooling_off_deadline(date(2026, 11, 28), 20, ZONE)
    for n, (item, wrong) in enumerate(zip(items, (None, "knows_dividends_uncertain"))):
        session = await verified_session(engine, item["id"], IDS[n])
        context = (await store.get(engine, item["id"]))["context"]
        answers: dict = {}
        for page in new_contract.visible_pages(answers, context):
            shown = {q.name: (q.correct_answer if q.correct_answer is not None else 5 if q.type == "rating" else "")
                     for q in new_contract.visible_questions(page, answers, context) if q.type != "comment"}
            if wrong in shown:
                shown[wrong] = False
            answers.update(shown)
            await store.save_page(engine, item["id"], session["id"], page=page.name, answers=shown,
                                  submission_key=f"{page.name}-{n}", now=T0 + timedelta(minutes=2))
        assert "knows_payment_terms" in answers and "knows_dividends_uncertain" in answers
        assert "knows_investment_risk" not in answers  # unit-linked only
        done = await store.complete(engine, item["id"], new_contract, now=T0 + timedelta(minutes=3),
                                    **service.signal_options())
        if wrong is None:
            assert (done["outcome"], done["problems"]) == ("success", [])
        else:
            assert done["outcome"] == "problem"
            assert [p["question"] for p in done["problems"]] == [wrong]


async def test_addresses_in_one_ipv6_64_count_as_one_address(engine, cases):
    items = await invite(engine, cases, ["P001", "P002"])
    for n, item in enumerate(items):
        session = await verified_session(engine, item["id"], IDS[n], ip=f"2001:db8:1:2::{n + 1}",
                                         ua=f"agent-{n}")
        await answer_all(engine, item["id"], session["id"], now=T0 + timedelta(minutes=1))
        done = await store.complete(engine, item["id"], survey(), now=T0 + timedelta(minutes=2), shared_limit=1)
    assert done["flags"] == ["shared_address"]  # two holders on one /64, on two devices
    assert (await store.get(engine, items[0]["id"]))["flags"] == ["shared_address"]


async def test_two_processes_completing_and_posting_at_once_record_once(engine, cases, test_database):
    """Two engines on one database (as two gateway processes): the database's own locking decides."""
    other = create_engine(test_database)
    try:
        (item,) = await invite(engine, cases, ["P001"])
        session = await verified_session(engine, item["id"], IDS[0])
        engines = [engine, other] * 2
        saved = await asyncio.gather(*(store.save_page(e, item["id"], session["id"], page="identity",
                                                       answers={"self_signed": True}, submission_key="same",
                                                       now=T0 + timedelta(minutes=1)) for e in engines))
        assert sorted(saved) == [False, False, False, True]
        await store.save_page(other, item["id"], session["id"], page="terms", answers={"knows_cooling_off": "yes"},
                              submission_key="k2", now=T0 + timedelta(minutes=1))
        results = await asyncio.gather(*(store.complete(e, item["id"], survey(), now=T0 + timedelta(minutes=2))
                                         for e in engines))
        assert all(r == results[0] for r in results) and results[0]["outcome"] == "success"
        assert (await kinds(engine, item["id"])).count("completed") == 1
        assert len(await outbox_rows(engine, store.TOPIC_RESULT)) == 1
        assert store.verify_chain(await store.events(engine, item["id"])) is None
    finally:
        await other.dispose()
