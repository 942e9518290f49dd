"""Test data of the survey store and API tests: a small survey (SurveyJS subset), a product catalog,
policies with receipt dates, and the steps of a customer through a case (open, verify, answer)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from surveys.definition import Survey, parse_survey
from surveys.otp import OtpPolicy
from surveys.products import Catalog

from gateway.storage import policies
from gateway.storage import surveys as store

ZONE = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=ZONE)  # a Tuesday
KEY = b"test-link-key-0123456789abcdef"
BASE = "https://hf.example.cn"
POLICY = OtpPolicy(length=6, ttl_s=300, per_minute=1, per_hour=5, max_wrong=5)
UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"

SURVEY_RAW: dict[str, Any] = {
    "name": "mini_contract", "title": "新契约回访", "version": "1",
    "pages": [
        {"name": "identity", "elements": [
            {"type": "boolean", "name": "self_signed", "title": "投保单是否由您本人签名？", "isRequired": True,
             "correctAnswer": True},
        ]},
        {"name": "terms", "elements": [
            {"type": "radiogroup", "name": "knows_cooling_off", "title": "您是否了解{cooling_off_days}天犹豫期？",
             "isRequired": True, "correctAnswer": "yes",
             "choices": [{"value": "yes", "text": "了解"}, {"value": "no", "text": "不了解"}]},
            {"type": "comment", "name": "remarks", "title": "其他意见", "isRequired": False},
        ]},
    ],
}

PRODUCTS: dict[str, Any] = {
    "default": {"survey": "mini_contract", "name": "保险产品", "payment": "single", "payment_years": 1,
                "payment_frequency": "趸交", "type": "traditional", "cooling_off_days": 15},
    "WL20": {"survey": "mini_contract", "name": "终身寿险", "payment": "regular", "payment_years": 20,
             "payment_frequency": "年交", "type": "participating", "cooling_off_days": 20},
}

# Valid ID numbers (check digit included).
IDS = ["11010519491231002X", "110105198001011019", "110105198001011027", "110105198001011035",
       "110105198001011043", "11010519800101106X"]


def survey() -> Survey:
    return parse_survey(SURVEY_RAW, "mini_contract.json")


def write_config(folder: Path) -> Path:
    """The survey and catalog as files, for SurveyService (surveys_dir)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mini_contract.json").write_text(json.dumps(SURVEY_RAW, ensure_ascii=False), encoding="utf-8")
    (folder / "products.yaml").write_text(yaml.safe_dump(PRODUCTS, allow_unicode=True), encoding="utf-8")
    return folder


def catalog(tmp_path: Path) -> Catalog:
    return Catalog.load(write_config(tmp_path / "surveys") / "products.yaml")


def policy_rows(n: int = 3, receipt: date = date(2026, 11, 28)) -> list[dict[str, str]]:
    rows = []
    for i in range(n):
        rows.append({"policy_number": f"P{i + 1:03d}", "product": "WL20" if i == 0 else "TERM",
                     "holder_name": ["张伟", "李娜", "王芳", "刘洋", "陈静", "杨帆"][i],
                     "insured_name": ["张伟", "李娜", "王芳", "刘洋", "陈静", "杨帆"][i],
                     "insured_id_number": IDS[i], "phone": f"1380013800{i}", "start_date": "2026-11-20",
                     "expiry_date": "2046-11-19", "receipt_date": receipt.isoformat()})
    return rows


async def add_policies(engine, rows: list[dict[str, str]]) -> None:
    good, errors = policies.validate_rows(rows, T0.date())
    assert not errors, errors
    await policies.upsert(engine, good)


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def invite(engine, cat: Catalog, numbers: list[str], *, now: datetime = T0, channel: str = "sms"):
    return await store.create_invitations(engine, survey(), cat, [{"policy_number": n, "channel": channel}
                                                                  for n in numbers],
                                          key=KEY, base_url=BASE, now=now, zone=ZONE)


async def verified_session(engine, invitation_id: str, id_number: str, *, now: datetime = T0,
                           ip: str = "203.0.113.7", ua: str = UA) -> dict[str, Any]:
    """Open the link and pass the identity check: the session row."""
    _cookie, session = await store.open_session(engine, invitation_id, now=now, client_ip=ip, user_agent=ua,
                                                ttl_s=1800)
    code, refusal = await store.issue_code(engine, invitation_id, session["id"], policy=POLICY, now=now)
    assert refusal is None and code
    verdict = await store.verify_identity(engine, invitation_id, session["id"], id_suffix=id_number[-4:].lower(),
                                          code=code, policy=POLICY, now=now + timedelta(seconds=20))
    assert verdict == "passed"
    return session


async def answer_all(engine, invitation_id: str, session_id: str, *, now: datetime, good: bool = True,
                     remarks: str = "") -> None:
    await store.save_page(engine, invitation_id, session_id, page="identity", answers={"self_signed": True},
                          submission_key=f"k1-{invitation_id}", now=now)
    answers = {"knows_cooling_off": "yes" if good else "no"}
    if remarks:
        answers["remarks"] = remarks
    await store.save_page(engine, invitation_id, session_id, page="terms", answers=answers,
                          submission_key=f"k2-{invitation_id}", now=now + timedelta(seconds=30))
