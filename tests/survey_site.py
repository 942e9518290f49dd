"""What the survey page tests (and bench/survey_load.py) share: a gateway with the fake Aliyun SMS,
policies and invitations made through the API, and a customer reading pages by their contract.

The page contract is all a customer here relies on: one `<form method="post">` per page, inputs
named by the questions' `name`, choices by their `value`, booleans `true`/`false`, the
verification inputs `id_suffix` and `otp`, the code read from the SMS's template parameter `code`
(the fake provider's log), and `data-survey-status` on the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from html.parser import HTMLParser
from typing import Any, Awaitable, Callable, Iterator
from urllib.parse import urlencode

import httpx

from pathlib import Path

from conftest import ROOT, free_port, isolated_database, running_gateway
from fakes.aliyun_sms import FakeAliyunSms
from gateway.settings import Settings, load_settings
from gateway.storage.database import create_engine
from sqlalchemy.ext.asyncio import AsyncEngine
from speech.understanding.idcard import check_character
from surveys.definition import Survey, load_survey

SURVEY_PATH = ROOT / "config" / "surveys" / "new_contract.json"
LINK_KEY = "test-survey-link-key-0123456789abcdef"
OTP_TEMPLATE = "SMS_SURVEY_CODE"
HOLDER = "张三明"
HOLDER_MASKED = re.compile(r"投保人：张\*[*明]")  # the surname and stars (the store masks it)


def id_number(n: int) -> str:
    """A valid 18-character ID number (checksum right), distinct per n, ending in X for some."""
    born = date(1960, 1, 1) + timedelta(days=n % 12000)
    first17 = f"110105{born:%Y%m%d}{n % 1000:03d}"
    return first17 + check_character(first17)


def phone(n: int) -> str:
    return f"138{n:08d}"[-11:]


def policy_row(n: int, product: str = "ENDOW_PAR10", receipt: date | None = None, **extra: Any) -> dict[str, Any]:
    """A participating regular-premium product by default: its extra items are shown too."""
    receipt = receipt or date.today()
    return {"policy_number": f"PS{n:06d}", "product": product, "holder_name": HOLDER, "insured_name": HOLDER,
            "insured_id_number": id_number(n), "phone": phone(n), "start_date": receipt.isoformat(),
            "receipt_date": receipt.isoformat(), **extra}


# -- the page contract --------------------------------------------------------------------------

@dataclass
class Form:
    method: str = ""
    action: str = ""
    hidden: dict[str, str] = field(default_factory=dict)
    radios: dict[str, list[str]] = field(default_factory=dict)
    checkboxes: dict[str, list[str]] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (name, value)


@dataclass
class Parsed:
    status: str = ""
    page: str = ""
    forms: list[Form] = field(default_factory=list)
    text: str = ""


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = Parsed()
        self._form: Form | None = None
        self._chunks: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.out.status = a.get("data-survey-status", "")
            self.out.page = a.get("data-survey-page", "")
        elif tag == "form":
            self._form = Form(a.get("method", "").lower(), a.get("action", ""))
            self.out.forms.append(self._form)
        elif self._form is not None and tag == "input":
            kind, name = a.get("type", "text"), a.get("name", "")
            if kind == "hidden":
                self._form.hidden[name] = a.get("value", "")
            elif kind == "radio":
                self._form.radios.setdefault(name, []).append(a.get("value", ""))
            elif kind == "checkbox":
                self._form.checkboxes.setdefault(name, []).append(a.get("value", ""))
            elif name:
                self._form.texts.append(name)
        elif self._form is not None and tag == "textarea":
            self._form.texts.append(a.get("name", ""))
        elif self._form is not None and tag == "button":
            self._form.buttons.append((a.get("name", ""), a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None

    def handle_data(self, data: str) -> None:
        self._chunks.append(data)

    def close(self) -> None:
        super().close()
        self.out.text = re.sub(r"\s+", " ", "".join(self._chunks))


def parse(html: str) -> Parsed:
    parser = _Parser()
    parser.feed(html)
    parser.close()
    return parser.out


def _as_form(value: Any) -> list[str]:
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def answers_for(form: Form, survey: Survey, *, wrong: set[str] = frozenset(), text: str = "无") -> list[tuple[str, str]]:
    """The fields a customer posts on this page: the expected answers (or the first choice), `text`
    in free-text fields; the questions in `wrong` answered otherwise."""
    fields = list(form.hidden.items())
    for name, values in {**form.radios, **form.checkboxes}.items():
        question = survey.question(name)
        if question.correct_answer is not None:
            chosen = _as_form(question.correct_answer)
            if name in wrong:
                chosen = [next(v for v in values if v not in chosen)]
        else:
            chosen = values[:1]
        fields.extend((name, v) for v in chosen)
    fields.extend((name, text) for name in form.texts)
    return fields


# -- a customer over HTTP -------------------------------------------------------------------

class Customer:
    """One phone's browser: its cookies, the pages it was shown, the codes it got by SMS."""

    def __init__(self, base: str, fake: FakeAliyunSms, survey: Survey, number: str) -> None:
        self.base = base
        self.fake = fake
        self.survey = survey
        self.phone = number
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=30)
        self.last: httpx.Response | None = None
        self.parsed = Parsed()

    def close(self) -> None:
        self.http.close()

    def _see(self, response: httpx.Response) -> httpx.Response:
        hops = 0
        while response.status_code in (302, 303) and hops < 10:
            response = self.http.get(response.headers["location"])
            hops += 1
        self.last = response
        self.parsed = parse(response.text) if "html" in response.headers.get("content-type", "") else Parsed()
        return response

    def open(self, url: str) -> httpx.Response:
        return self._see(self.http.get(url))

    def get(self, path: str) -> httpx.Response:
        return self._see(self.http.get(path))

    @property
    def form(self) -> Form:
        forms = [f for f in self.parsed.forms if f.method == "post"]
        assert len(forms) == 1, f"expected one post form, found {len(forms)} on {self.parsed.status!r}"
        return forms[0]

    def post(self, fields: list[tuple[str, str]] | dict[str, str], *, follow: bool = True) -> httpx.Response:
        items = list(fields.items()) if isinstance(fields, dict) else fields
        response = self.http.post(self.form.action, content=urlencode(items),
                                  headers={"content-type": "application/x-www-form-urlencoded"})
        return self._see(response) if follow else response

    def codes(self) -> list[str]:
        return [s.params["code"] for s in self.fake.sends if s.to == self.phone]

    def send_code(self) -> str:
        before = len(self.codes())
        self.post([*self.form.hidden.items(), ("action", "send_code")])
        codes = self.codes()
        assert len(codes) == before + 1, f"no new code sent: {self.parsed.text[:300]}"
        return codes[-1]

    def verify(self, suffix: str, code: str) -> httpx.Response:
        return self.post([*self.form.hidden.items(), ("id_suffix", suffix), ("otp", code), ("action", "verify")])

    def answer_page(self, *, wrong: set[str] = frozenset(), text: str = "无") -> httpx.Response:
        return self.post([*answers_for(self.form, self.survey, wrong=wrong, text=text), ("action", "next")])

    def finish(self, *, wrong: set[str] = frozenset(), text: str = "无", limit: int = 20) -> list[str]:
        """Answer page after page until the completed page; the pages seen, in order."""
        seen = []
        while self.parsed.status == "in_progress" and len(seen) < limit:
            seen.append(self.parsed.page)
            self.answer_page(wrong=wrong, text=text)
            assert self.last is not None and self.last.status_code == 200, self.parsed.text[:300]
        assert self.parsed.status == "completed", self.parsed.text[:300]
        return seen


# -- the site ---------------------------------------------------------------------------------

@dataclass
class Site:
    base: str
    sms: FakeAliyunSms
    survey: Survey
    settings: Settings

    def import_policies(self, rows: list[dict[str, Any]]) -> None:
        response = httpx.post(f"{self.base}/api/policies", json=rows, timeout=30)
        assert response.status_code == 200, response.text

    def invite(self, policy_numbers: list[str], channel: str = "sms", survey: str = "new_contract") -> list[dict[str, Any]]:
        response = httpx.post(f"{self.base}/api/surveys/{survey}/invitations",
                              json=[{"policy_number": p, "channel": channel} for p in policy_numbers], timeout=30)
        assert response.status_code in (200, 201), response.text
        body = response.json()
        items = body if isinstance(body, list) else body.get("invitations", body.get("items"))
        assert all(not item.get("error") for item in items), items
        return items

    def customer(self, n: int) -> Customer:
        return Customer(self.base, self.sms, self.survey, phone(n))

    def new_case(self, n: int, **policy: Any) -> tuple[dict[str, Any], Customer]:
        self.import_policies([policy_row(n, **policy)])
        (item,) = self.invite([f"PS{n:06d}"])
        return item, self.customer(n)

    def evidence(self, invitation_id: str) -> httpx.Response:
        return httpx.get(f"{self.base}/api/invitations/{invitation_id}/evidence", timeout=30)

    def invitation(self, invitation_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.base}/api/invitations/{invitation_id}", timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def revoke(self, invitation_id: str) -> None:
        response = httpx.post(f"{self.base}/api/invitations/{invitation_id}/revoke", timeout=30)
        assert response.status_code == 200, response.text


def site_settings(make_settings, sms: FakeAliyunSms, port: int, **overrides: Any) -> Settings:
    return make_settings(
        port=port, survey_base_url=f"http://127.0.0.1:{port}", survey_link_key=LINK_KEY,
        aliyun_sms_endpoint=sms.url, aliyun_sms_sign_name="保险服务", survey_otp_provider="aliyun_sms",
        survey_otp_template=OTP_TEMPLATE, scheduler_enabled=False, **sms.credentials, **overrides)


@contextlib.contextmanager
def survey_site(make_settings, **overrides: Any) -> Iterator[Site]:
    """A gateway (its survey pages) with the fake Aliyun SMS; scheduler off (the pages send codes)."""
    with FakeAliyunSms() as sms:
        port = free_port()
        settings = site_settings(make_settings, sms, port, **overrides)
        with running_gateway(settings, port=port) as address:
            yield Site(f"http://{address}", sms, load_survey(SURVEY_PATH), settings)


def token_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def in_database(url: str, work: Callable[[AsyncEngine], Awaitable[Any]]) -> Any:
    """Run `work(engine)` on the site's database from a test (the gateway runs in its own thread)."""
    async def go() -> Any:
        engine = create_engine(url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def events(site: Site, invitation_id: str) -> list[dict[str, Any]]:
    from gateway.storage import surveys as store

    return in_database(site.settings.effective_database_url, lambda engine: store.events(engine, invitation_id))


def count_rows(site: Site, sql: str, **params: Any) -> int:
    from sqlalchemy import text

    async def work(engine: AsyncEngine) -> int:
        async with engine.connect() as conn:
            return int((await conn.execute(text(sql), params)).scalar_one())

    return in_database(site.settings.effective_database_url, work)


@contextlib.contextmanager
def shared_site(tmp: Path, model_cache: Path, **overrides: Any) -> Iterator[Site]:
    """A site for a whole test module (a gateway start is seconds): its own folder and database."""
    with isolated_database(tmp) as url:
        def make(**values: Any) -> Settings:
            base = load_settings(environ={})
            return base.replace(**{"data_dir": str(tmp), "database_url": url, "model_cache_dir": str(model_cache),
                                   "model_mirrors": (), "model_url": "", "recognizer_workers": 2, **values})

        with survey_site(make, **overrides) as site:
            yield site


def past_deadline(site: Site, invitation_id: str) -> None:
    """Time passed: the case's cooling-off deadline is yesterday (it cannot be invited that way)."""
    from datetime import datetime, timezone

    from sqlalchemy import update

    from gateway.storage.database import survey_invitations

    async def work(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.execute(update(survey_invitations).where(survey_invitations.c.id == invitation_id)
                               .values(deadline=datetime.now(timezone.utc) - timedelta(days=1)))

    in_database(site.settings.effective_database_url, work)
