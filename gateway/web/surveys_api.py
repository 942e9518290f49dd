"""Admin API of the follow-up surveys (behind the API keys; personal data masked without a PII key).

    POST /api/surveys/{survey}/invitations     [{"policy_number", "channel": sms|wechat|voice}, ...] (or one
                                                object, or {"invitations": [...]}): each with id, url, status,
                                                deadline, or its error; 207 when some items failed
    GET  /api/invitations/{id}                 status, outcome, answers, problem flag and problems, signals
    GET  /api/invitations?survey=&status=&outcome=&problem=&policy_number=&since=&until=&limit=&offset=
    GET  /api/invitations.csv?...              the same filters, every matching case as CSV (UTF-8 with BOM)
    GET  /api/surveys/{survey}/figures?since=&until=
    GET  /api/invitations/{id}/evidence        an HTML evidence page: the chain checked, every event, pages shown
    POST /api/invitations/{id}/revoke          {"reason": "..."}
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any, Mapping

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from surveys.answers import display

from gateway.privacy import mask_number, mask_text
from gateway.services import Services
from gateway.storage import surveys as store
from gateway.storage.results import iso_utc
from gateway.web.api import _parse_time, authorized, may_see_pii

STATUSES = ("issued", "opened", "verified", "completed", "expired", "revoked")
OUTCOMES = ("success", "problem", "not_completed", "outside_cooling_off")
CSV_LIMIT = 100_000
CSV_COLUMNS = ("id", "survey", "survey_version", "policy_number", "channel", "phone", "status", "outcome", "problem",
               "problems", "flags", "deadline", "created_at", "opened_at", "verified_at", "completed_at", "seconds",
               "source", "inside_cooling_off", "contact_requested_at", "answers")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _guard(request: Request) -> tuple[Services, Any] | JSONResponse:
    services: Services = request.app.state.services
    if not authorized(request, services):
        return _error(401, "missing or invalid API key")
    service = getattr(request.app.state, "surveys", None)
    if service is None:
        return _error(503, "surveys are not configured (see surveys_dir and the log)")
    return services, service


def mask_ip(value: str | None) -> str | None:
    """An IPv4 address without its last part, an IPv6 one without its last four groups."""
    if not value:
        return value
    if "." in value:
        return ".".join(value.split(".")[:3]) + ".*"
    return ":".join(value.split(":")[:4]) + ":*"


def _answers(answers: Mapping[str, Any], show_pii: bool) -> dict[str, Any]:
    """Free-text answers may hold a phone or ID number: masked like any free text."""
    return {k: (v if show_pii or not isinstance(v, str) else mask_text(v)) for k, v in (answers or {}).items()}


def public(row: Mapping[str, Any], *, show_pii: bool, url: str | None = None) -> dict[str, Any]:
    """The API's view of a case."""
    deadline, completed = row["deadline"], row["completed_at"]
    out = {
        "id": row["id"], "survey": row["survey"], "survey_version": row["survey_version"],
        "survey_hash": row["survey_hash"], "policy_number": row["policy_number"], "channel": row["channel"],
        "phone": row["phone"] if show_pii else mask_number(row["phone"]), "status": row["status"],
        "outcome": row["outcome"], "problem": bool(row["problem"]), "problems": row["problems"] or [],
        "answers": _answers(row["answers"], show_pii), "flags": row["flags"] or [],
        "context": row["context"] or {}, "source": row["source"], "seconds": row["seconds"],
        "deadline": iso_utc(deadline), "created_at": iso_utc(row["created_at"]),
        "opened_at": iso_utc(row["opened_at"]), "verified_at": iso_utc(row["verified_at"]),
        "completed_at": iso_utc(completed), "closed_at": iso_utc(row["closed_at"]),
        "locked_until": iso_utc(row["locked_until"]), "contact_requested_at": iso_utc(row["contact_requested_at"]),
        "inside_cooling_off": completed is not None and completed <= deadline, "pii_masked": not show_pii,
    }
    if url is not None:
        out["url"] = url
    return out


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed JSON: {exc}") from None


async def create_invitations(request: Request) -> Response:
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    services, service = guard
    name = request.path_params["survey"]
    if name not in service.surveys:
        return _error(404, f"no survey {name} (surveys: {', '.join(sorted(service.surveys)) or 'none'})")
    try:
        data = await _json(request)
    except ValueError as exc:
        return _error(400, str(exc))
    if isinstance(data, dict):
        data = data["invitations"] if "invitations" in data else [data]
    if not isinstance(data, list) or not data:
        return _error(400, 'expected a JSON list of {"policy_number": ..., "channel": "sms|wechat|voice"}')
    if len(data) > store.MAX_BATCH:
        return _error(413, f"at most {store.MAX_BATCH} invitations per request; split the batch")
    items = await store.create_invitations(services.database.engine, service.survey(name), service.catalog, data,
                                           key=service.key, base_url=service.base_url, now=services.now(),
                                           zone=service.zone)
    errors = sum(1 for i in items if "error" in i)
    return JSONResponse({"survey": name, "invitations": items, "created": sum(1 for i in items if i.get("created")),
                         "errors": errors}, status_code=207 if errors else 200)


async def get_invitation(request: Request) -> Response:
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    services, service = guard
    row = await store.get(services.database.engine, request.path_params["invitation_id"])
    if row is None:
        return _error(404, f"no invitation {request.path_params['invitation_id']}")
    return JSONResponse(public(row, show_pii=may_see_pii(request, services), url=service.url(row)))


def _filters(q: Mapping[str, str]) -> dict[str, Any]:
    """The listing's filters from the query string; ValueError names what is wrong."""
    status, outcome, problem = q.get("status") or None, q.get("outcome") or None, q.get("problem")
    if status and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    if outcome and outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
    if problem not in (None, "", "true", "false", "1", "0"):
        raise ValueError("problem must be true or false")
    return {"survey": q.get("survey") or None, "status": status, "outcome": outcome,
            "problem": None if problem in (None, "") else problem in ("true", "1"),
            "policy_number": q.get("policy_number") or None,
            "since": _parse_time(q.get("since"), "since"), "until": _parse_time(q.get("until"), "until")}


async def list_invitations(request: Request) -> Response:
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    services, service = guard
    q = request.query_params
    try:
        filters = _filters(q)
        limit, offset = min(max(int(q.get("limit", 50)), 1), 500), max(int(q.get("offset", 0)), 0)
    except ValueError as exc:
        return _error(400, str(exc) if "must" in str(exc) else "limit and offset must be whole numbers")
    total, rows = await store.query(services.database.engine, **filters, limit=limit, offset=offset)
    show = may_see_pii(request, services)
    return JSONResponse({"total": total, "limit": limit, "offset": offset,
                         "invitations": [public(r, show_pii=show, url=service.url(r)) for r in rows]})


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = str(value)
    # A cell starting like a formula is opened as one by spreadsheets: quoted with an apostrophe.
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not text[1:2].isdigit() else text


async def export_csv(request: Request) -> Response:
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    services, _service = guard
    try:
        filters = _filters(request.query_params)
    except ValueError as exc:
        return _error(400, str(exc))
    _total, rows = await store.query(services.database.engine, **filters, limit=CSV_LIMIT, offset=0)
    show = may_see_pii(request, services)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        view = public(row, show_pii=show)
        view["problems"] = [p.get("question") for p in view["problems"]]
        writer.writerow([_cell(view.get(c)) for c in CSV_COLUMNS])
    return Response("\ufeff" + buffer.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="invitations.csv"'})


async def survey_figures(request: Request) -> Response:
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    services, service = guard
    name = request.path_params["survey"]
    if name not in service.surveys:
        return _error(404, f"no survey {name}")
    q = request.query_params
    try:
        since, until = _parse_time(q.get("since"), "since"), _parse_time(q.get("until"), "until")
    except ValueError as exc:
        return _error(400, str(exc))
    figures = await store.figures(services.database.engine, name, since, until)
    return JSONResponse({**figures, "since": iso_utc(since), "until": iso_utc(until)})


async def revoke_invitation(request: Request) -> Response:
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    services, _service = guard
    try:
        data = await _json(request)
    except ValueError as exc:
        return _error(400, str(exc))
    reason = str(data.get("reason") or "") if isinstance(data, dict) else ""
    invitation_id = request.path_params["invitation_id"]
    try:
        row = await store.revoke(services.database.engine, invitation_id, services.now(), reason[:200])
    except LookupError:
        return _error(404, f"no invitation {invitation_id}")
    except store.InvitationClosed as exc:
        return _error(409, f"invitation {invitation_id} is {exc.status}: it cannot be revoked")
    return JSONResponse(public(row, show_pii=may_see_pii(request, services)))


# The evidence page ------------------------------------------------------------

EVIDENCE = jinja2.Environment(autoescape=True, loader=jinja2.DictLoader({"evidence.html": """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>回访证据 {{ case.id }}</title>
<style>body{font:14px/1.5 sans-serif;margin:2em}table{border-collapse:collapse;width:100%}
td,th{border:1px solid #ccc;padding:4px;vertical-align:top;text-align:left}code{font-size:12px;word-break:break-all}
.ok{color:#060}.bad{color:#b00;font-weight:bold}</style></head>
<body data-chain="{{ 'intact' if broken is none else 'broken' }}">
<h1>电子化回访证据 / Follow-up survey evidence</h1>
<table>
<tr><th>案件 Case</th><td>{{ case.id }}</td></tr>
<tr><th>问卷 Survey</th><td>{{ case.survey }} v{{ case.survey_version }} <code>{{ case.survey_hash }}</code></td></tr>
<tr><th>保单号 Policy</th><td>{{ case.policy_number }}</td></tr>
<tr><th>手机 Phone</th><td>{{ case.phone }}</td></tr>
<tr><th>状态 Status</th><td>{{ case.status }} / {{ case.outcome or "-" }}{% if case.problem %} (问题件){% endif %}</td></tr>
<tr><th>标记 Flags</th><td>{{ case.flags | join(", ") or "-" }}</td></tr>
<tr><th>犹豫期截止 Deadline</th><td>{{ local(case.deadline) }}</td></tr>
<tr><th>完成 Completed</th><td>{{ local(case.completed_at) }}{% if case.seconds is not none %} ({{ "%.0f" % case.seconds }} s){% endif %}</td></tr>
<tr><th>哈希链 Chain</th><td>{% if broken is none %}<span class="ok">完整 intact: {{ events | length }} events verified</span>
{% else %}<span class="bad">断开 broken at event #{{ broken }} ({{ events[broken].kind }})</span>{% endif %}</td></tr>
</table>
<h2>答案 Answers</h2>
<table><tr><th>题目 Question</th><th>答案 Answer</th><th>预期 Expected</th></tr>
{% for a in answers %}<tr><td>{{ a.title }} <code>{{ a.name }}</code></td><td>{{ a.answer }}</td>
<td>{{ a.expected }}{% if a.problem %} <span class="bad">≠</span>{% endif %}</td></tr>{% endfor %}
</table>
<h2>展示的页面 Pages shown</h2>
<table><tr><th>时间 Time</th><th>页面 Page</th><th>SHA-256</th></tr>
{% for e in pages %}<tr><td>{{ local(e.at) }}</td><td>{{ e.data.page }}</td><td><code>{{ e.data.sha256 or e.data.hash }}</code></td></tr>{% endfor %}
</table>
<h2>事件 Events</h2>
<table><tr><th>#</th><th>时间 Time</th><th>事件 Event</th><th>地址 Address</th><th>User agent</th><th>内容 Data</th><th>Hash</th></tr>
{% for e in events %}<tr{% if broken is not none and loop.index0 >= broken %} class="bad"{% endif %}>
<td>{{ e.seq }}</td><td>{{ local(e.at) }}</td><td>{{ e.kind }}</td><td>{{ e.client_ip or "-" }}</td>
<td>{{ e.user_agent or "-" }}</td><td><code>{{ e.data_json }}</code></td><td><code>{{ e.hash }}</code></td></tr>{% endfor %}
</table>
<p>生成于 Generated {{ generated }}{% if masked %}; 个人信息已遮蔽 personal data masked{% endif %}.</p>
</body></html>"""}))


def _masked_data(data: Mapping[str, Any], show_pii: bool) -> dict[str, Any]:
    out = dict(data)
    for key in ("client_ip", "user_agent"):  # shown in their own columns
        out.pop(key, None)
    if not show_pii:
        if isinstance(out.get("answers"), dict):
            out["answers"] = _answers(out["answers"], False)
        if isinstance(out.get("note"), str):
            out["note"] = mask_text(out["note"])
    return out


def _answer_rows(survey: Any, case: Mapping[str, Any], show_pii: bool) -> list[dict[str, Any]]:
    answers = _answers(case["answers"] or {}, show_pii)
    problems = {p.get("question") for p in case["problems"] or []}
    rows = []
    for name, value in answers.items():
        title, expected = name, None
        if survey is not None:
            try:
                question = survey.question(name)
                title, expected = question.title, question.correct_answer
                value = display(question, value)
                if expected is not None:
                    expected = display(question, expected)
            except KeyError:
                pass
        rows.append({"name": name, "title": title, "answer": value,
                     "expected": "-" if expected is None else expected, "problem": name in problems})
    return rows


async def evidence(request: Request) -> Response:
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    services, service = guard
    invitation_id = request.path_params["invitation_id"]
    engine = services.database.engine
    row = await store.get(engine, invitation_id)
    if row is None:
        return _error(404, f"no invitation {invitation_id}")
    show = may_see_pii(request, services)
    trail = await store.events(engine, invitation_id)
    broken = store.verify_chain(trail)
    shown_events = [{**e, "client_ip": e["client_ip"] if show else mask_ip(e["client_ip"]),
                     "data": _masked_data(e["data"] or {}, show),
                     "data_json": json.dumps(_masked_data(e["data"] or {}, show), ensure_ascii=False)}
                    for e in trail]
    zone = service.zone

    def local(value: datetime | None) -> str:
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if value else "-"

    case = public(row, show_pii=show)
    case.update(deadline=row["deadline"], completed_at=row["completed_at"])
    html = EVIDENCE.get_template("evidence.html").render(
        case=case, events=shown_events, broken=broken, masked=not show, local=local,
        pages=[e for e in shown_events if e["kind"] == "page_shown"],
        answers=_answer_rows(service.surveys.get(row["survey"]), row, show),
        generated=local(services.now()))
    return HTMLResponse(html, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                                       "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})


def survey_api_routes() -> list[Route]:
    return [
        Route("/api/surveys/{survey}/invitations", create_invitations, methods=["POST"]),
        Route("/api/surveys/{survey}/figures", survey_figures),
        Route("/api/invitations", list_invitations),
        Route("/api/invitations.csv", export_csv),
        Route("/api/invitations/{invitation_id}", get_invitation),
        Route("/api/invitations/{invitation_id}/evidence", evidence),
        Route("/api/invitations/{invitation_id}/revoke", revoke_invitation, methods=["POST"]),
    ]
