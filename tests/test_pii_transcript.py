"""A key without PII scope sees no caller's name, ID or phone anywhere: not in the bot's read-back either."""

from __future__ import annotations

import json
import re

import httpx

from conftest import running_gateway
from test_claim_calls import PERSONAS, import_policies, talk_with_token

WORD_TABLES = ("零幺二三四五六七八九", "零一二三四五六七八九", "〇一二三四五六七八九")


def spoken(number: str, words: str) -> str:
    """A number read digit by digit in words, without separators (the body is searched without spaces)."""
    return "".join(words[int(c)] if c.isdigit() else "叉" for c in number)


def forbidden_forms(persona: dict) -> list[str]:
    gold = persona["gold"]
    numbers = {gold["insured_id_number"], gold["reporter_phone"], persona["caller_number"]}
    forms = {gold["reporter_name"], gold["insured_name"], *numbers}
    forms |= {spoken(n, words) for n in numbers for words in WORD_TABLES}
    return sorted(forms)


def assert_nothing_personal(body: dict, persona: dict) -> None:
    text = json.dumps(body, ensure_ascii=False)
    squeezed = re.sub(r"[\s,，、\-]", "", text)  # any grouping the read-back speaks digits in
    for form in forbidden_forms(persona):
        assert form not in squeezed, (form, text)
    # No phone- or ID-length digit run at all, but the policy number (shown, as the claims API always did).
    # Report ids are 32 hex digits, which may hold 11 decimal ones in a row.
    unnumbered = re.sub(r"\b[0-9a-f]{32}\b", "", squeezed.replace(body_policy_number(body), ""))
    assert not re.search(r"\d{11,}", unnumbered), text


def body_policy_number(body: dict) -> str:
    found = body.get("policy_number") or next(
        (r["policy_number"] for r in body.get("reports", body.get("results", [])) if r.get("policy_number")), None)
    return found or "-"


async def test_masked_reports_and_results_carry_no_name_id_or_phone_in_the_transcript(make_settings):
    persona = PERSONAS[0]
    settings = make_settings(api_keys=("ops", "auditor"), pii_api_keys=("auditor",))
    with running_gateway(settings) as address:
        ops, auditor = {"Authorization": "Bearer ops"}, {"Authorization": "Bearer auditor"}
        await import_policies(address, ops)
        events = await talk_with_token(address, persona, "ops")
        report_id = next(e for e in events if e["event"] == "report")["report_id"]
        async with httpx.AsyncClient() as client:
            async def get(path: str, headers: dict) -> dict:
                response = await client.get(f"http://{address}{path}", headers=headers)
                assert response.status_code == 200, response.text
                return response.json()

            full = await get(f"/api/reports/{report_id}", auditor)
            # The read-back did speak them (so the masked view has something to hide).
            bot_text = "".join(t["text"] for t in full["transcript"] if t["speaker"] == "bot").replace(" ", "")
            assert spoken(persona["gold"]["reporter_phone"], WORD_TABLES[0]) in bot_text
            assert persona["gold"]["reporter_name"] in bot_text

            for path in (f"/api/reports/{report_id}", f"/api/reports?call_id={persona['id']}",
                         f"/api/results/{report_id}", f"/api/results?call_id={persona['id']}"):
                masked = await get(path, ops)
                assert_nothing_personal(masked, persona)
            masked = await get(f"/api/reports/{report_id}", ops)
            assert masked["pii_masked"] is True
            assert len(masked["transcript"]) == len(full["transcript"])  # masked, not dropped
            assert any("联系电话" in t["text"] for t in masked["transcript"] if t["speaker"] == "bot")


def test_read_backs_are_masked_in_every_form_the_formats_speak():
    from gateway.privacy import mask_spoken

    secrets = {"韦文博": "韦**", "330106199011130961": "330***********0961", "18000806360": "180******60"}
    # id_digits: groups 3 3 4 4 4 in 零幺二… words with spaces; phone_digits: 3 4 4.
    said = "报案人韦文博，身份证号三三零 幺零六 幺九九零 幺幺幺三 零九六幺，联系电话幺八零 零零八零 六三六零。"
    assert mask_spoken(said, secrets) == "报案人韦**，身份证号330***********0961，联系电话180******60。"
    assert mask_spoken("电话18000806360", secrets) == "电话180******60"
    assert mask_spoken("身份证33010619901113096X", {"33010619901113096X": "330***********096X"}) == \
        "身份证330***********096X"
    # A number that is no slot's value (another phone read back) is starred by its length.
    assert mask_spoken("回电号码幺三九 零零零零 幺幺幺幺", {}) == "回电号码***********"
    assert mask_spoken("备用号码13900001111", {}) == "备用号码***********"
    # Ordinary words, dates, amounts and a read-back tail stay as they are.
    plain = "3月17日出险，理赔金额三万五千元，身份证尾号零九六幺，请说一下。"
    assert mask_spoken(plain, secrets) == plain
