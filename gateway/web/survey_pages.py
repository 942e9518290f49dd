"""The customer-facing survey pages: a signed link opened on a phone, identity, then page by page.

    GET  /s/{token}                    checks the token's form before any look-up, opens a session
                                       (never uses the token up), sets the cookie, 303 to the clean URL
    GET  /survey/{id}[?page=name]      the step the case is at: verification, liveness, a page, done
    POST /survey/{id}                  every form posts here (post-redirect-get): csrf, submission_key,
                                       _page and `action` (send_code, verify, liveness_start, next,
                                       back, contact) with the answers named by the questions
    GET  /survey/{id}/liveness?check=  back from the liveness provider
    GET  /survey/{id}/contact          the confirmation of "请电话联系我"
    GET  /survey-static/{name}         the stylesheet, served from memory

Server-rendered (Jinja2, compiled once), no script; every response carries the headers of
survey_security. Identity comes before any policy detail; afterwards names and numbers are shown
masked. Answers are saved page by page through gateway/storage/surveys.py, each rendered form's
submission_key once; every page served is recorded in the case's audit trail with the sha256 of
the exact bytes sent, the client address and the user agent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote

import jinja2
from markupsafe import Markup, escape
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.services import Services
from gateway.settings import Settings
from gateway.storage import surveys as store
from gateway.storage.survey_common import Incomplete, InvitationClosed, NotVerified
from gateway.storage.survey_service import SurveyService
from gateway.web import survey_security as security
from gateway.web.survey_liveness import LivenessError, LivenessProvider
from gateway.web.survey_sms import CodeNotSent, CodeSender
from surveys import answers as reading
from surveys.definition import Page, Question, Survey, render_text
from surveys.tokens import well_formed

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static" / "survey"
ROOT = HERE.parent.parent

VERIFY_PAGE = "_verify"
LIVENESS_PAGE = "_liveness"
DONE_PAGE = "_done"
MAX_FORM_BYTES = 64 * 1024  # the largest page form (comments of 2,000 characters) is far below this
RESERVED_FIELDS = ("csrf", "submission_key", "_page", "action")

# Messages of the identity step, by the key the redirect carries (?m=): fixed texts, never echoed input.
MESSAGES: dict[str, tuple[str, str]] = {
    "sent": ("ok", "验证码已发送至保单预留的手机号码，{minutes}分钟内有效。"),
    "wait_minute": ("error", "验证码发送过于频繁，请1分钟后再试。"),
    "hour_limit": ("error", "验证码发送次数已达上限（每小时{per_hour}次），请稍后再试。"),
    "sms_failed": ("error", "验证码发送失败，请稍后重试，或点击下方“我有疑问 / 请电话联系我”。"),
    "wrong": ("error", "身份证号码后4位或验证码不正确，请核对后重新输入。"),
    "expired_code": ("error", "验证码已失效或尚未获取，请点击“获取验证码”重新获取。"),
    "bad_input": ("error", "请输入身份证号码后4位和短信中的{length}位验证码。"),
    "locked": ("error", "验证错误次数过多，已暂时锁定。请1小时后再试，或点击下方“我有疑问 / 请电话联系我”。"),
    "liveness_consent": ("error", "请先勾选同意进行人脸识别。"),
    "liveness_failed": ("error", "人脸识别未通过，请重试，或点击下方“我有疑问 / 请电话联系我”。"),
    "liveness_unavailable": ("error", "人脸识别服务暂时不可用，请稍后重试，或点击下方“我有疑问 / 请电话联系我”。"),
    "stale": ("error", "该页面已过期，请在本页重新作答并提交。"),
}

# The pages shown instead of a survey: (status code, data-survey-status, heading, lines).
PROBLEMS: dict[str, tuple[int, str, str, tuple[str, ...]]] = {
    "not_found": (404, "not_found", "链接无效", (
        "该回访链接无效，请检查短信中的链接是否完整。", "如有疑问，请联系您的保险公司客服。")),
    "expired": (410, "expired", "回访链接已过期", (
        "该回访已超过有效期（犹豫期内有效）。", "如需办理，请联系您的保险公司客服。")),
    "revoked": (410, "revoked", "回访链接已失效", (
        "该回访链接已被撤销，无需再填写。", "如有疑问，请联系您的保险公司客服。")),
    "completed": (410, "completed", "回访已完成", (
        "该回访已经完成，感谢您的配合，无需重复填写。", "如有疑问，请联系您的保险公司客服。")),
    "no_session": (403, "session_expired", "页面已超时", (
        "为保护您的信息安全，页面长时间未操作已超时。", "请重新点击短信中的链接，获取新的验证码后继续作答（已填写的内容不会丢失）。")),
    "csrf": (403, "forbidden", "请求无法处理", (
        "该表单不是由本页面提交，或页面已失效，已被拒绝。", "请重新点击短信中的链接继续作答。")),
    "bad_request": (400, "bad_request", "请求无法处理", (
        "提交的内容无法识别，请返回重新作答。",)),
    "unavailable": (503, "unavailable", "服务暂时不可用", (
        "回访服务正在启动或维护，请稍后再试。",)),
}


def mask_name(name: str | None) -> str:
    """张三丰 -> 张*丰, 张三 -> 张*; what a page shows after verification."""
    name = (name or "").strip()
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_phone(phone: str | None) -> str:
    """13812345678 -> 138****5678: the first three and last four digits."""
    digits = (phone or "").strip()
    if len(digits) < 8:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _client(request: Request) -> tuple[str | None, str | None]:
    return (request.client.host if request.client else None), request.headers.get("user-agent", "")[:300]


@dataclass
class Visit:
    """One request's view of its case: the invitation, its survey and the browser's session."""
    invitation: dict[str, Any]
    survey: Survey
    session: dict[str, Any] | None
    now: datetime
    client_ip: str | None
    user_agent: str | None

    @property
    def id(self) -> str:
        return self.invitation["id"]

    @property
    def answers(self) -> dict[str, Any]:
        return dict(self.invitation.get("answers") or {})

    @property
    def context(self) -> dict[str, Any]:
        return dict(self.invitation.get("context") or {})

    @property
    def verified(self) -> bool:
        return bool(self.session and self.session.get("verified_at"))


@dataclass
class SurveyPages:
    """Everything the pages need, built once at the gateway's start (app.state.survey_pages)."""
    settings: Settings
    engine: AsyncEngine
    shared: SurveyService  # definitions, link key, code policy, signals, zone (app.state.surveys)
    sender: CodeSender
    liveness: LivenessProvider | None
    services: Services | None = None
    env: jinja2.Environment = field(init=False)
    css: bytes = field(init=False)
    headers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        # Compiled once and cached; never re-read from disk per request.
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                                      auto_reload=False, cache_size=64, trim_blocks=True, lstrip_blocks=True)
        for name in ("base", "verify", "liveness", "page", "done", "message"):
            self.env.get_template(f"survey/{name}.html")
        self.css = (STATIC / "survey.css").read_bytes()
        self.headers = security.security_headers([self.liveness.origin] if self.liveness else [])

    @classmethod
    def from_services(cls, services: Services, shared: SurveyService) -> "SurveyPages":
        settings = services.settings
        liveness = (LivenessProvider(settings.survey_liveness_url, settings.survey_liveness_api_key,
                                     timeout_s=settings.provider_timeout_s)
                    if settings.survey_liveness_url else None)
        return cls(settings, services.database.engine, shared,
                   CodeSender.from_settings(settings, services.database.engine), liveness, services)

    @property
    def surveys(self) -> Mapping[str, Survey]:
        return self.shared.surveys

    @property
    def key(self) -> bytes:
        return self.shared.key

    @property
    def otp_policy(self):  # surveys.otp.OtpPolicy
        return self.shared.otp_policy

    async def aclose(self) -> None:
        await self.sender.aclose()
        if self.liveness is not None:
            await self.liveness.aclose()

    def now(self) -> datetime:
        return datetime.now(self.shared.zone)

    # -- responses -------------------------------------------------------------------------
    def _headers(self, response: Response) -> Response:
        return security.apply_headers(response, self.headers)

    def redirect(self, url: str) -> Response:
        return self._headers(RedirectResponse(url, status_code=303))

    def render(self, template: str, status_code: int = 200, **values: Any) -> tuple[Response, bytes]:
        values.setdefault("brand", "保单回访")
        values.setdefault("title", values.get("heading") or values["brand"])
        values.setdefault("status", "")
        body = self.env.get_template(f"survey/{template}.html").render(**values).encode("utf-8")
        response = Response(body, status_code=status_code, media_type="text/html; charset=utf-8")
        return self._headers(response), body

    def problem(self, kind: str, **extra: Any) -> Response:
        status_code, status, heading, lines = PROBLEMS[kind]
        response, _ = self.render("message", status_code, status=status, heading=heading, lines=lines, **extra)
        return response

    async def shown(self, visit: Visit, template: str, page: str, status_code: int = 200,
                    **values: Any) -> Response:
        """Render a page of this case and record it (page, sha256 of the exact bytes) in its trail."""
        response, body = self.render(template, status_code, **values)
        await store.add_event(self.engine, visit.id, "page_shown", {"page": page, "sha256": security.html_sha256(body)},
                              now=visit.now, client_ip=visit.client_ip, user_agent=visit.user_agent)
        return response

    def static(self, name: str) -> Response:
        if name != "survey.css":
            return self._headers(Response("not found", status_code=404, media_type="text/plain"))
        return self._headers(Response(self.css, media_type="text/css; charset=utf-8"))

    # -- the case a request is about -----------------------------------------------------------
    def _closed(self, invitation: Mapping[str, Any], now: datetime) -> str | None:
        status = invitation.get("status")
        if status == "revoked":
            return "revoked"
        if status == "expired":
            return "expired"
        if status == "completed":
            return "completed"
        deadline = _aware(invitation.get("deadline"))
        if deadline is not None and now > deadline:
            return "expired"
        return None

    def _locked(self, invitation: Mapping[str, Any], now: datetime) -> bool:
        until = _aware(invitation.get("locked_until"))
        return until is not None and now < until

    async def visit(self, request: Request, invitation_id: str) -> Visit | Response:
        """The case and the browser's session of it, or the page saying why there is none."""
        now = self.now()
        if not (len(invitation_id) == 32 and all(c in "0123456789abcdef" for c in invitation_id)):
            return self.problem("not_found")
        cookie = security.session_cookie(request, invitation_id)
        # The case and the cookie's session in one query (every request needs both).
        invitation, session = await store.invitation_with_session(self.engine, invitation_id, cookie, now)
        if invitation is None:
            return self.problem("not_found")
        survey = self.surveys.get(invitation["survey"])
        if survey is None:
            log.error("invitation %s names survey %r, which is not loaded", invitation_id, invitation["survey"])
            return self.problem("unavailable")
        ip, agent = _client(request)
        return Visit(invitation, survey, session, now, ip, agent)

    # -- GET /s/{token} ------------------------------------------------------------------------
    async def open_link(self, request: Request) -> Response:
        token = request.path_params["token"]
        if not well_formed(token, self.key):  # garbage never reaches the database
            return self.problem("not_found")
        invitation = await store.invitation_by_token(self.engine, token)
        if invitation is None:
            return self.problem("not_found")
        now = self.now()
        closed = self._closed(invitation, now)
        if closed and closed != "completed":
            return self.problem(closed)
        invitation_id = invitation["id"]
        # The same browser coming back with a live session keeps it (and its verification).
        cookie = security.session_cookie(request, invitation_id)
        if cookie and (session := await store.session_by_cookie(self.engine, cookie, now)) is not None \
                and session.get("invitation_id") == invitation_id:
            return self.redirect(f"/survey/{invitation_id}")
        if closed == "completed":
            return self.problem("completed")
        ip, agent = _client(request)
        try:
            value, _ = await store.open_session(self.engine, invitation_id, now=now, client_ip=ip, user_agent=agent,
                                                ttl_s=self.shared.session_ttl_s)
        except InvitationClosed as exc:
            return self.problem(exc.status)
        response = self.redirect(f"/survey/{invitation_id}")
        security.set_session_cookie(response, request, invitation_id, value)
        return response

    # -- GET /survey/{id} ----------------------------------------------------------------------
    async def get_page(self, request: Request) -> Response:
        visit = await self.visit(request, request.path_params["invitation_id"])
        if isinstance(visit, Response):
            return visit
        return await self.current(visit, request.query_params.get("page"), request.query_params.get("m"))

    async def current(self, visit: Visit, wanted: str | None = None, message_key: str | None = None) -> Response:
        closed = self._closed(visit.invitation, visit.now)
        if closed == "completed" and visit.verified:
            return await self.done(visit, message_key)
        if closed:
            return self.problem(closed)
        if visit.session is None:
            return self.problem("no_session")
        if not visit.verified:
            return await self.verify_page(visit, message_key)
        if self.liveness is not None and not await self._liveness_passed(visit):
            return await self.liveness_page(visit, message_key)
        return await self.survey_page(visit, wanted)

    def _message(self, key: str | None) -> dict[str, Any]:
        if key not in MESSAGES:
            return {}
        kind, text = MESSAGES[key]
        text = text.format(minutes=max(1, round(self.settings.survey_otp_ttl_s / 60)),
                           per_hour=self.settings.survey_otp_per_hour, length=self.otp_policy.length)
        return {"message": text, "message_kind": kind}

    def _form(self, visit: Visit, page: str) -> dict[str, Any]:
        assert visit.session is not None
        csrf = visit.session["csrf_token"]
        return {"csrf": csrf, "submission_key": security.new_submission_key(csrf, page), "form_page": page,
                "form_url": f"/survey/{visit.id}"}

    def _who(self, visit: Visit) -> dict[str, Any]:
        """Masked, and only ever after verification."""
        if not visit.verified:
            return {}
        context = visit.context
        holder = context.get("holder_name_masked") or mask_name(visit.invitation.get("holder_name"))
        return {"holder": holder, "phone": mask_phone(visit.invitation.get("phone"))}

    async def verify_page(self, visit: Visit, message_key: str | None, status_code: int = 200) -> Response:
        locked = self._locked(visit.invitation, visit.now)
        if locked:
            message_key, status_code = "locked", 423
        return await self.shown(visit, "verify", VERIFY_PAGE, status_code, status="locked" if locked else "verify",
                                title="身份验证", locked=locked, otp_length=self.otp_policy.length, id_suffix="",
                                **self._message(message_key), **self._form(visit, VERIFY_PAGE))

    async def liveness_page(self, visit: Visit, message_key: str | None) -> Response:
        return await self.shown(visit, "liveness", LIVENESS_PAGE, status="liveness", title="人脸识别",
                                **self._who(visit), **self._message(message_key), **self._form(visit, LIVENESS_PAGE))

    async def done(self, visit: Visit, message_key: str | None = None) -> Response:
        html = visit.survey.completed_html or "<p>感谢您完成本次回访。</p>"
        return await self.shown(visit, "done", DONE_PAGE, status="completed", title="回访已完成",
                                completed_html=self._html(html, visit), **self._who(visit),
                                **self._message(message_key), **self._form(visit, DONE_PAGE))

    # -- survey pages --------------------------------------------------------------------------
    def _text_context(self, visit: Visit) -> dict[str, Any]:
        context = visit.context
        context.setdefault("holder_name_masked", self._who(visit).get("holder", ""))
        deadline = _aware(visit.invitation.get("deadline"))
        if deadline is not None:  # shown as people write dates: 2026年12月17日
            local = deadline.astimezone(self.shared.zone)
            context["deadline"] = f"{local.year}年{local.month}月{local.day}日"
        return context

    def _html(self, html: str, visit: Visit) -> Markup:
        """An html element: the definition's markup is trusted, the values put into it are escaped."""
        values = {k: str(escape(v)) for k, v in self._text_context(visit).items() if isinstance(v, (str, int, float))}
        return Markup(render_text(html, values))

    def _resume_index(self, survey: Survey, pages: list[Page], answers: Mapping[str, Any],
                      context: Mapping[str, Any]) -> int:
        """The first visible page with an answerable question not yet answered (html-only pages
        count as read); the last page when every one is answered."""
        for index, page in enumerate(pages):
            if any(q.name not in answers for q in survey.visible_questions(page, answers, context)):
                return index
        return max(0, len(pages) - 1)

    def _item(self, question: Question, visit: Visit, current: Mapping[str, Any], raw: Mapping[str, list[str]] | None,
              error: str | None) -> dict[str, Any]:
        context = self._text_context(visit)
        if question.type == "html":
            return {"type": "html", "name": question.name, "html": self._html(question.html, visit)}
        item: dict[str, Any] = {
            "type": question.type, "name": question.name, "required": question.is_required, "error": error,
            "title": render_text(question.title or question.name, context),
            "description": render_text(question.description, context) if question.description else "",
            "max_length": question.limit,
        }
        if raw is not None:  # a form sent back with errors shows what was sent
            given = raw.get(question.name, [])
        else:
            value = current.get(question.name)
            if value is None:
                given = []
            elif isinstance(value, bool):
                given = ["true" if value else "false"]
            elif isinstance(value, (list, tuple)):
                given = [str(v) for v in value]
            else:
                given = [str(value)]
        item["selected"] = set(given)
        item["text"] = given[0] if given else ""
        if question.type in ("radiogroup", "checkbox"):
            item["options"] = [(c.value, render_text(c.text, context)) for c in question.choices]
        elif question.type == "boolean":
            item["options"] = [("true", question.label_true or "是"), ("false", question.label_false or "否")]
        elif question.type == "rating":
            item["options"] = [(str(n), str(n)) for n in range(question.rate_min, question.rate_max + 1)]
        return item

    async def survey_page(self, visit: Visit, wanted: str | None, *, raw: Mapping[str, list[str]] | None = None,
                          errors: Mapping[str, str] | None = None, page: Page | None = None,
                          typed: Mapping[str, Any] | None = None) -> Response:
        survey, answers, context = visit.survey, visit.answers, visit.context
        if typed:  # visibility follows what was just sent (a question it reveals shows with its error)
            answers = {**answers, **typed}
        pages = survey.visible_pages(answers, context)
        if not pages:
            return self.problem("unavailable")
        resume = self._resume_index(survey, pages, visit.answers, context)
        names = [p.name for p in pages]
        if page is not None and page.name in names:
            index = names.index(page.name)
        elif wanted in names and names.index(wanted) <= resume:
            index = names.index(wanted)
        else:
            index = resume
        page = pages[index]
        items = [self._item(q, visit, visit.answers, raw, (errors or {}).get(q.name))
                 for q in survey.visible_elements(page, answers, context)]
        return await self.shown(
            visit, "page", page.name, 422 if errors else 200, status="in_progress", page_name=page.name,
            title=f"{survey.title}（第{index + 1}页/共{len(pages)}页）", brand=survey.title or "保单回访",
            page_title=render_text(page.title, self._text_context(visit)) if page.title else "",
            progress=(index + 1, len(pages)), items=items, has_errors=bool(errors), last=index == len(pages) - 1,
            has_back=index > 0, **self._who(visit), **self._form(visit, page.name))

    # -- POST /survey/{id} ---------------------------------------------------------------------
    async def post(self, request: Request) -> Response:
        visit = await self.visit(request, request.path_params["invitation_id"])
        if isinstance(visit, Response):
            return visit
        if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
            return self.problem("bad_request")
        try:
            form = await request.form()
        except Exception:  # noqa: BLE001 - a malformed body is the client's problem, said on a page
            return self.problem("bad_request")
        raw = {k: [v for v in form.getlist(k) if isinstance(v, str)] for k in form.keys()}
        one = {k: (v[-1] if v else "") for k, v in raw.items()}
        # No session or another session's token: refused before anything else is read.
        if visit.session is None:
            closed = self._closed(visit.invitation, visit.now)
            return self.problem(closed) if closed else self.problem("csrf" if security.session_cookie(request, visit.id) is None else "no_session")
        if not security.same_secret(one.get("csrf"), visit.session.get("csrf_token")):
            log.warning("survey %s: a form without this session's CSRF token refused", visit.id)
            return self.problem("csrf")
        try:
            return await self._post(visit, request, raw, one)
        except InvitationClosed as exc:  # closed meanwhile (revoked, expired, or completed by a twin post)
            return self.redirect(f"/survey/{visit.id}") if exc.status == "completed" else self.problem(exc.status)
        except NotVerified:  # the session lapsed between the look-up and the write
            return self.redirect(f"/survey/{visit.id}")

    async def _post(self, visit: Visit, request: Request, raw: Mapping[str, list[str]],
                    one: Mapping[str, str]) -> Response:
        action = one.get("action") or "next"
        page_name = one.get("_page", "")
        if action == "contact":
            await store.request_contact(self.engine, visit.id, now=visit.now, page=page_name[:64] or None,
                                        note=one.get("note", ""), client_ip=visit.client_ip,
                                        user_agent=visit.user_agent, zone=self.shared.zone)
            return self.redirect(f"/survey/{visit.id}/contact")
        closed = self._closed(visit.invitation, visit.now)
        if closed:
            return self.redirect(f"/survey/{visit.id}") if closed == "completed" else self.problem(closed)
        if page_name == VERIFY_PAGE or not visit.verified:
            return await self.post_verify(visit, action, one)
        if page_name == LIVENESS_PAGE:
            return await self.post_liveness(visit, request, action, one)
        if page_name == DONE_PAGE:
            return self.redirect(f"/survey/{visit.id}")
        if self.liveness is not None and not await self._liveness_passed(visit):
            return self.redirect(f"/survey/{visit.id}")
        return await self.post_page(visit, action, page_name, one.get("submission_key"), raw)

    async def post_verify(self, visit: Visit, action: str, one: Mapping[str, str]) -> Response:
        assert visit.session is not None
        back = f"/survey/{visit.id}"
        if self._locked(visit.invitation, visit.now):
            return self.redirect(back)
        if action == "send_code":
            issued = await store.issue_code(self.engine, visit.id, visit.session["id"], policy=self.otp_policy,
                                            now=visit.now)
            if issued.code is None:
                refusal = issued.refusal if issued.refusal in MESSAGES else "wait_minute"
                return self.redirect(f"{back}?m={refusal}")
            try:
                # OutId: the code's row, unique per code (the provider's receipts can name it).
                accepted = await self.sender.send(delivery_id=f"otp-{issued.otp_id}", phone=visit.invitation["phone"],
                                                  code=issued.code)
            except CodeNotSent:
                return self.redirect(f"{back}?m=sms_failed")
            await store.code_sent(self.engine, issued.otp_id, accepted.provider_id, visit.now)
            return self.redirect(f"{back}?m=sent")
        suffix = one.get("id_suffix", "").strip().upper()
        code_given = one.get("otp", "").strip()
        if len(suffix) != 4 or not code_given.isdigit() or len(code_given) != self.otp_policy.length:
            return self.redirect(f"{back}?m=bad_input")
        result = await store.verify_identity(self.engine, visit.id, visit.session["id"], id_suffix=suffix,
                                             code=code_given, policy=self.otp_policy, now=visit.now)
        if result == "passed":
            return self.redirect(back)
        return self.redirect(f"{back}?m={result if result in MESSAGES else 'wrong'}")

    # -- liveness ------------------------------------------------------------------------------
    async def _liveness_passed(self, visit: Visit) -> bool:
        """A passed check recorded in this case's trail (only its result id and score are kept)."""
        for event in reversed(await store.events(self.engine, visit.id)):
            if event.get("kind") == "liveness" and (event.get("data") or {}).get("passed"):
                return True
        return False

    async def post_liveness(self, visit: Visit, request: Request, action: str, one: Mapping[str, str]) -> Response:
        back = f"/survey/{visit.id}"
        if self.liveness is None or action != "liveness_start":
            return self.redirect(back)
        if one.get("liveness_consent") != "yes":
            return self.redirect(f"{back}?m=liveness_consent")
        await store.add_event(self.engine, visit.id, "liveness", {"step": "consent", "consent": True},
                              now=visit.now, client_ip=visit.client_ip, user_agent=visit.user_agent)
        return_url = str(request.url_for("survey_liveness_return", invitation_id=visit.id))
        try:
            check = await self.liveness.start(visit.id, return_url)
        except LivenessError as exc:
            log.warning("survey %s: liveness check not started: %s", visit.id, exc)
            return self.redirect(f"{back}?m=liveness_unavailable")
        # The check id travels in the return URL; the provider's own page sends the customer back.
        await store.add_event(self.engine, visit.id, "liveness", {"step": "started", "check_id": check.check_id},
                              now=visit.now, client_ip=visit.client_ip, user_agent=visit.user_agent)
        return self._headers(RedirectResponse(check.url, status_code=303))

    async def liveness_return(self, request: Request) -> Response:
        visit = await self.visit(request, request.path_params["invitation_id"])
        if isinstance(visit, Response):
            return visit
        back = f"/survey/{visit.id}"
        if self.liveness is None or not visit.verified:
            return self.redirect(back)
        check_id = request.query_params.get("check", "")
        started = [e for e in await store.events(self.engine, visit.id)
                   if e.get("kind") == "liveness" and (e.get("data") or {}).get("step") == "started"]
        if not started:
            return self.redirect(back)
        check_id = check_id or (started[-1].get("data") or {}).get("check_id", "")
        if check_id not in {(e.get("data") or {}).get("check_id") for e in started}:
            return self.redirect(back)  # only a check this case started
        try:
            result = await self.liveness.result(check_id)
        except LivenessError as exc:
            log.warning("survey %s: liveness result not read: %s", visit.id, exc)
            return self.redirect(f"{back}?m=liveness_unavailable")
        await store.add_event(self.engine, visit.id, "liveness",
                              {"step": "result", "result_id": result.result_id, "score": result.score,
                               "passed": result.passed},
                              now=visit.now, client_ip=visit.client_ip, user_agent=visit.user_agent)
        return self.redirect(back if result.passed else f"{back}?m=liveness_failed")

    # -- answers -------------------------------------------------------------------------------
    async def post_page(self, visit: Visit, action: str, page_name: str, key: str | None,
                        raw: Mapping[str, list[str]]) -> Response:
        assert visit.session is not None
        survey, context = visit.survey, visit.context
        back = f"/survey/{visit.id}"
        page = next((p for p in survey.pages if p.name == page_name), None)
        if page is None:
            return self.problem("bad_request")
        if not security.submission_key_valid(key, visit.session["csrf_token"], page.name):
            return self.problem("csrf")
        stored = visit.answers
        if action == "back":
            pages = [p.name for p in survey.visible_pages(stored, context)]
            index = pages.index(page.name) if page.name in pages else 0
            return self.redirect(f"{back}?page={quote(pages[max(0, index - 1)])}")
        form = {k: v for k, v in raw.items() if k not in RESERVED_FIELDS}
        read = reading.read_page(survey, page, form, stored, context)
        if read.errors:
            return await self.survey_page(visit, page.name, raw=form, errors=read.errors, page=page,
                                          typed=read.answers)
        page_answers = dict(read.answers)
        for question in survey.visible_questions(page, {**stored, **page_answers}, context):
            page_answers.setdefault(question.name, None)  # seen and left empty: the page is done
        saved = await store.save_page(self.engine, visit.id, visit.session["id"], page=page.name,
                                      answers=page_answers, submission_key=key or "", now=visit.now)
        if saved:
            merged = {**stored, **page_answers}
        else:  # that very form was recorded before (a double tap, a retry): go on from what is stored
            merged = dict((await store.get(self.engine, visit.id) or visit.invitation).get("answers") or {})
        pages = survey.visible_pages(merged, context)
        names = [p.name for p in pages]
        if page.name in names and names.index(page.name) < len(names) - 1:
            return self.redirect(f"{back}?page={quote(names[names.index(page.name) + 1])}")
        if reading.is_complete(survey, merged, context):
            try:
                await store.complete(self.engine, visit.id, survey, now=visit.now, source="web",
                                     **self.shared.signal_options())
            except Incomplete:  # a twin post's answers are not all in yet: the resume page says what is left
                pass
            return self.redirect(back)
        return self.redirect(back)  # something before is still unanswered: the resume page says what

    async def contact_done(self, request: Request) -> Response:
        visit = await self.visit(request, request.path_params["invitation_id"])
        if isinstance(visit, Response):
            return visit
        lines = ["我们的客服将尽快致电保单预留的手机号码与您联系。"]
        values: dict[str, Any] = {}
        if visit.session is not None and not self._closed(visit.invitation, visit.now):
            lines.append("您也可以返回继续完成回访。")
            values["back_url"] = f"/survey/{visit.id}"
        response, _ = self.render("message", status="contact_requested", heading="已收到您的请求", lines=lines,
                                  **values)
        return response


def _pages(request: Request) -> SurveyPages | None:
    return getattr(request.app.state, "survey_pages", None)


def _endpoint(method_name: str):
    async def endpoint(request: Request) -> Response:
        pages = _pages(request)
        if pages is None:
            headers = security.security_headers()
            return security.apply_headers(Response("回访服务暂时不可用，请稍后再试。", status_code=503,
                                                   media_type="text/plain; charset=utf-8"), headers)
        try:
            return await getattr(pages, method_name)(request)
        except Exception:  # noqa: BLE001 - a customer sees a clear page, never a stack trace
            log.exception("survey page %s failed", request.url.path)
            return pages.problem("unavailable")
    endpoint.__name__ = method_name
    return endpoint


async def _dispatch_survey(request: Request) -> Response:
    pages = _pages(request)
    if pages is not None and request.method == "POST":
        return await _endpoint("post")(request)
    return await _endpoint("get_page")(request)


async def _static(request: Request) -> Response:
    pages = _pages(request)
    if pages is None:
        return Response("not found", status_code=404)
    return pages.static(request.path_params["name"])


def survey_routes() -> list[Route]:
    return [
        Route("/s/{token:path}", _endpoint("open_link"), methods=["GET"]),  # any tail: a clear page
        Route("/survey/{invitation_id}", _dispatch_survey, methods=["GET", "POST"]),
        Route("/survey/{invitation_id}/liveness", _endpoint("liveness_return"), methods=["GET"],
              name="survey_liveness_return"),
        Route("/survey/{invitation_id}/contact", _endpoint("contact_done"), methods=["GET"]),
        Route("/survey-static/{name}", _static, methods=["GET"]),
    ]


def start_pages(services: Services, shared: SurveyService | None) -> SurveyPages | None:
    """The pages, or None (said in the log) when the surveys did not load (`shared` is None)."""
    if shared is None:
        log.error("survey pages disabled: the surveys did not load")
        return None
    try:
        return SurveyPages.from_services(services, shared)
    except (ValueError, OSError) as exc:
        log.error("survey pages disabled: %s", exc)
        return None


