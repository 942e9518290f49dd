"""The survey API through a real gateway on loopback (gateway/web/surveys_api.py): invitations made by
batch over HTTP after a policy import with receipt dates, one case with and without the PII key,
listing and paging, CSV, figures, revocation, and the evidence page (chain checked, a script typed into
a free-text answer shown as text)."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from conftest import running_gateway
from gateway.storage import surveys as store
from gateway.storage.database import create_engine, survey_events

from survey_cases import IDS, POLICY, UA, ZONE, answer_all, survey, write_config

OPS, AUDITOR = {"Authorization": "Bearer ops"}, {"Authorization": "Bearer auditor"}
BASE = "https://hf.example.cn"


def _settings(make_settings, tmp_path):
    return make_settings(api_keys=("ops", "auditor"), pii_api_keys=("auditor",),
                         surveys_dir=str(write_config(tmp_path / "surveys")), survey_link_key="api-test-link-key-0123",
                         survey_base_url=BASE)


def _policy_csv(n: int, receipt: str) -> str:
    names = ["张伟", "李娜", "王芳", "刘洋", "陈静"]
    lines = ["policy_number,product,holder_name,insured_name,insured_id_number,phone,start_date,expiry_date,receipt_date"]
    for i in range(n):
        lines.append(f"P{i + 1:03d},{'WL20' if i == 0 else 'TERM'},{names[i]},{names[i]},{IDS[i]},1391234567{i},"
                     f"2026-11-20,2046-11-19,{receipt}")
    return "\n".join(lines) + "\n"


async def _verified(engine, invitation_id: str, id_number: str, now: datetime, ip: str = "203.0.113.9"):
    _, session = await store.open_session(engine, invitation_id, now=now, client_ip=ip, user_agent=UA, ttl_s=1800)
    code, _ = await store.issue_code(engine, invitation_id, session["id"], policy=POLICY, now=now)
    assert await store.verify_identity(engine, invitation_id, session["id"], id_suffix=id_number[-4:], code=code,
                                       policy=POLICY, now=now + timedelta(seconds=10)) == "passed"
    return session


async def test_invitations_by_batch_over_http_idempotent_masked_without_the_pii_key(make_settings, tmp_path):
    receipt = (datetime.now(ZONE).date() - timedelta(days=2)).isoformat()
    with running_gateway(_settings(make_settings, tmp_path)) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            imported = await client.post("/api/policies", content=_policy_csv(3, receipt).encode(),
                                         headers={**OPS, "Content-Type": "text/csv"})
            assert imported.status_code == 200, imported.text
            batch = [{"policy_number": "P001", "channel": "sms"}, {"policy_number": "P002", "channel": "wechat"},
                     {"policy_number": "NOPE", "channel": "sms"}, {"policy_number": "P003", "channel": "pigeon"}]
            url = "/api/surveys/mini_contract/invitations"
            assert (await client.post(url, json=batch)).status_code == 401
            missing = await client.post("/api/surveys/no_such/invitations", json=batch, headers=OPS)
            assert missing.status_code == 404 and "mini_contract" in missing.json()["error"]
            assert (await client.post(url, content=b"[oops", headers=OPS)).status_code == 400
            first = await client.post(url, json=batch, headers=OPS)
            assert first.status_code == 207
            body = first.json()
            assert (body["created"], body["errors"]) == (2, 2)
            made = body["invitations"]
            assert [i.get("status") for i in made] == ["issued", "issued", None, None]
            assert "no policy NOPE" in made[2]["error"] and "'pigeon'" in made[3]["error"]
            assert all(i["url"].startswith(BASE + "/s/") and len(i["url"]) == len(BASE) + 3 + 15 for i in made[:2])
            again = (await client.post(url, json=batch[:2], headers=OPS)).json()
            assert [i["id"] for i in again["invitations"]] == [i["id"] for i in made[:2]] and again["created"] == 0
            assert [i["url"] for i in again["invitations"]] == [i["url"] for i in made[:2]]
            single = (await client.post(url, json={"policy_number": "P003", "channel": "voice"}, headers=OPS)).json()
            assert single["invitations"][0]["channel"] == "voice"

            case_id = made[0]["id"]
            masked = (await client.get(f"/api/invitations/{case_id}", headers=OPS)).json()
            assert masked["phone"] == "139******70" and masked["pii_masked"] is True
            assert (masked["status"], masked["problem"], masked["answers"], masked["flags"]) == ("issued", False, {}, [])
            assert masked["url"] == made[0]["url"] and masked["context"]["holder_name_masked"] == "张*"
            full = (await client.get(f"/api/invitations/{case_id}", headers=AUDITOR)).json()
            assert full["phone"] == "13912345670" and full["pii_masked"] is False
            assert (await client.get("/api/invitations/" + "0" * 32, headers=OPS)).status_code == 404

            listing = (await client.get("/api/invitations", params={"survey": "mini_contract", "limit": 2},
                                        headers=OPS)).json()
            assert listing["total"] == 3 and len(listing["invitations"]) == 2
            page2 = (await client.get("/api/invitations", params={"limit": 2, "offset": 2}, headers=OPS)).json()
            assert len(page2["invitations"]) == 1
            seen = {i["id"] for i in listing["invitations"] + page2["invitations"]}
            assert len(seen) == 3
            assert (await client.get("/api/invitations", params={"status": "nope"}, headers=OPS)).status_code == 400
            assert (await client.get("/api/invitations", params={"policy_number": "P002"},
                                     headers=OPS)).json()["total"] == 1

            revoked = await client.post(f"/api/invitations/{made[1]['id']}/revoke", json={"reason": "退保"},
                                        headers=OPS)
            assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
            assert revoked.json()["outcome"] == "not_completed"
            assert (await client.post("/api/invitations/" + "0" * 32 + "/revoke", headers=OPS)).status_code == 404
            revoked_list = (await client.get("/api/invitations", params={"status": "revoked"}, headers=OPS)).json()
            assert [i["id"] for i in revoked_list["invitations"]] == [made[1]["id"]]


async def test_csv_figures_and_the_evidence_page(make_settings, tmp_path, test_database):
    receipt = (datetime.now(ZONE).date() - timedelta(days=2)).isoformat()
    with running_gateway(_settings(make_settings, tmp_path)) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            await client.post("/api/policies", content=_policy_csv(4, receipt).encode(),
                              headers={**OPS, "Content-Type": "text/csv"})
            made = (await client.post("/api/surveys/mini_contract/invitations", headers=OPS,
                                      json=[{"policy_number": f"P00{i}", "channel": "sms"} for i in range(1, 5)])
                    ).json()["invitations"]
            engine = create_engine(test_database)
            now = datetime.now(ZONE)
            try:
                # P001 success (with a script and a phone typed into the comment), P002 a problem case,
                # P003 opened and verified only, P004 never opened.
                script = '<script>alert("x")</script> 请打13912345678'
                for n, good in ((0, True), (1, False)):
                    session = await _verified(engine, made[n]["id"], IDS[n], now)
                    await store.add_event(engine, made[n]["id"], "page_shown", {"page": "identity",
                                          "sha256": f"{n:02d}" * 32}, now=now, client_ip="203.0.113.9", user_agent=UA)
                    await answer_all(engine, made[n]["id"], session["id"], now=now + timedelta(seconds=30), good=good,
                                     remarks=script if n == 0 else "")
                    await store.complete(engine, made[n]["id"], survey(), now=now + timedelta(seconds=70 + 20 * n))
                await _verified(engine, made[2]["id"], IDS[2], now)
            finally:
                await engine.dispose()

            figures = (await client.get("/api/surveys/mini_contract/figures", headers=OPS)).json()
            assert {k: figures[k] for k in ("invited", "opened", "verified", "completed", "success", "problem",
                                            "problem_rate", "completed_in_cooling_off", "open")} == {
                "invited": 4, "opened": 3, "verified": 3, "completed": 2, "success": 1, "problem": 1,
                "problem_rate": 0.5, "completed_in_cooling_off": 2, "open": 2}
            assert figures["median_completion_s"] == pytest.approx(70.0)  # 60 s and 80 s after verification
            assert (await client.get("/api/surveys/nope/figures", headers=OPS)).status_code == 404

            exported = await client.get("/api/invitations.csv", params={"survey": "mini_contract"}, headers=OPS)
            assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
            rows = {r["policy_number"]: r for r in csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff")))}
            assert set(rows) == {"P001", "P002", "P003", "P004"}
            assert (rows["P001"]["status"], rows["P001"]["outcome"], rows["P001"]["inside_cooling_off"]) == \
                ("completed", "success", "true")
            assert (rows["P002"]["outcome"], rows["P002"]["problem"], rows["P002"]["problems"]) == \
                ("problem", "true", '["knows_cooling_off"]')
            assert rows["P001"]["phone"] == "139******70" and "13912345678" not in exported.text
            only_problems = await client.get("/api/invitations.csv", params={"problem": "true"}, headers=OPS)
            assert len(list(csv.DictReader(io.StringIO(only_problems.text.lstrip("\ufeff"))))) == 1
            full = await client.get("/api/invitations.csv", headers=AUDITOR)
            assert "13912345678" in full.text

            page = await client.get(f"/api/invitations/{made[0]['id']}/evidence", headers=OPS)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            html = page.text
            assert 'data-chain="intact"' in html and "<script>" not in html
            assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html or "&lt;script&gt;" in html
            assert "13912345678" not in html and "139******78" in html  # the phone in the comment, masked
            assert "203.0.113.*" in html and "203.0.113.9" not in html and "iPhone" in html
            assert "00" * 32 in html  # the page shown, with its hash
            assert "投保单是否由您本人签名？" in html and "了解" in html
            for kind in ("invited", "opened", "identity_passed", "page_shown", "answers", "completed"):
                assert f"<td>{kind}</td>" in html
            unmasked = (await client.get(f"/api/invitations/{made[0]['id']}/evidence", headers=AUDITOR)).text
            assert "203.0.113.9" in unmasked and "13912345678" in unmasked and "<script>alert" not in unmasked
            assert (await client.get(f"/api/invitations/{made[0]['id']}/evidence")).status_code == 401

            engine = create_engine(test_database)
            try:
                trail = await store.events(engine, made[1]["id"])
                async with engine.begin() as conn:
                    await conn.execute(update(survey_events).where(survey_events.c.id == trail[3]["id"])
                                       .values(data={"forged": True}))
            finally:
                await engine.dispose()
            broken = (await client.get(f"/api/invitations/{made[1]['id']}/evidence", headers=OPS)).text
            assert 'data-chain="broken"' in broken and "broken at event #3" in broken
