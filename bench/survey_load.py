"""The survey pages under load: many customers at once open their link, verify with the code the
fake SMS carried, and submit every page, on loopback; then every answer is counted in the database.

    python bench/survey_load.py [--clients 500] [--invitations N] [--think-ms 200]
                                [--database-url postgresql+asyncpg://...] [--deadline-s 600]

Starts `gateway serve` itself on a free loopback port with a temporary data folder (SQLite there
by default; `--database-url` an empty PostgreSQL database), scheduler off, and the fake Aliyun SMS
in a process of its own (this script with --sms: the codes are read from its log by phone). Then
imports N policies and invites them through the API, and runs `--clients` concurrent customers
(asyncio + httpx, each its own cookie jar) taking invitations from a queue: open the link, ask
for a code, read it, verify, then each page: POST the answers, follow the 303 to the next page,
pause `--think-ms` (a person reading; 0 for a flat-out run). One post in ten is sent twice with
the same submission_key, as a double tap would. The figures are over the answering phase:
completed page submissions (POST answered 303) per second and their latency (p50/p99 of the
POST, and of the whole page turn, POST + GET of the next page).

Afterwards, in the database: lost = a submission the server acknowledged that is missing from
`survey_submissions`, or whose answers are not in the invitation; duplicated = a (case, page)
recorded more than once (submissions or `answers` events) although each was submitted once.
Also printed: the CPU the gateway process and this client spent over the customer phase, per
acknowledged page (`gateway_cpu_ms_per_page`, `client_cpu_ms_per_page`; Linux /proc), the
figure that says what a submission costs on a shared, noisy machine.
Bounded: `--deadline-s` for the whole run, 30 s per request; the gateway and the fake are always
stopped. The last output line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import httpx  # noqa: E402

SURVEY = "new_contract"


def serve_sms(port: int) -> int:
    """The fake Aliyun SMS in this process, its log answering the codes sent to one phone."""
    import threading

    from fakes.aliyun_sms import FakeAliyunSms
    from starlette.responses import JSONResponse

    class CodeLog(FakeAliyunSms):
        async def _log_endpoint(self, request):  # type: ignore[override]
            number = request.query_params.get("phone")
            with self._lock:
                sends = [s for s in self.sends if number is None or s.to == number]
                codes = [s.params.get("code") for s in sends]
                total = len(self.sends)
            return JSONResponse({"codes": codes, "sends": total, "duplicates": self.duplicates()})

    fake = CodeLog("LTAI-bench-key", "bench-secret-0123456789", port=port)
    fake.start()
    print(json.dumps({"url": fake.url}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    fake.stop()
    return 0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Figures:
    submits: list[float] = field(default_factory=list)  # POST of a page, seconds
    turns: list[float] = field(default_factory=list)  # POST + GET of the next page
    acknowledged: list[tuple[str, str]] = field(default_factory=list)  # (invitation, page) answered 303
    completed: list[str] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    first_submit: float | None = None
    last_submit: float = 0.0
    requests: int = 0


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Customer:
    def __init__(self, base: str, sms_url: str, survey, figures: Figures, think_s: float, rng: random.Random,
                 number: int, tls: ssl.SSLContext) -> None:
        # Each customer its own phone: an address (X-Forwarded-For, as from the proxy in front of the
        # gateway; uvicorn trusts it from loopback) and a user agent, so the shared-device signal
        # sees different devices, as it would in the field.
        headers = {"x-forwarded-for": f"10.{number // 65536 % 256}.{number // 256 % 256}.{number % 256}",
                   "user-agent": f"Mozilla/5.0 (Linux; Android 14; bench-{number}) Mobile Safari/537.36"}
        # `verify=tls`: one TLS context for every client. httpx builds one per client otherwise
        # (loading the CA bundle, ~30 ms of CPU), which was 97 % of this script's CPU and made the
        # client, not the gateway, the bottleneck (the links are plain http on loopback anyway).
        self.http = httpx.AsyncClient(base_url=base, timeout=30, follow_redirects=False, headers=headers, verify=tls,
                                      limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        self.sms = sms_url
        self.survey = survey
        self.figures = figures
        self.think_s = think_s
        self.rng = rng

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _get(self, path: str) -> httpx.Response:
        self.figures.requests += 1
        response = await self.http.get(path)
        while response.status_code == 303:
            self.figures.requests += 1
            response = await self.http.get(response.headers["location"])
        return response

    async def _post(self, path: str, fields: list[tuple[str, str]]) -> httpx.Response:
        self.figures.requests += 1
        return await self.http.post(path, content=urlencode(fields),
                                    headers={"content-type": "application/x-www-form-urlencoded"})

    async def code(self, sms: httpx.AsyncClient, number: str, before: int) -> str:
        for _ in range(200):
            codes = (await sms.get(f"{self.sms}/_fake/log", params={"phone": number})).json()["codes"]
            if len(codes) > before:
                return codes[-1]
            await asyncio.sleep(0.02)
        raise RuntimeError(f"no code reached {number}")

    async def run(self, case: dict[str, Any], sms: httpx.AsyncClient) -> None:
        from survey_site import answers_for, parse

        invitation = case["id"]
        page = parse((await self._get(case["url"])).text)
        if page.status != "verify":
            raise RuntimeError(f"expected the verification page, got {page.status!r}")
        (form,) = page.forms
        await self._post(form.action, [*form.hidden.items(), ("action", "send_code")])
        code = await self.code(sms, case["phone"], 0)
        page = parse((await self._get(f"/survey/{invitation}")).text)
        (form,) = page.forms
        response = await self._post(form.action, [*form.hidden.items(), ("id_suffix", case["suffix"]),
                                                  ("otp", code), ("action", "verify")])
        page = parse((await self._get(response.headers["location"])).text)
        while page.status == "in_progress":
            (form,) = page.forms
            fields = [*answers_for(form, self.survey, text="无"), ("action", "next")]
            started = time.perf_counter()
            response = await self._post(form.action, fields)
            submitted = time.perf_counter()
            if response.status_code != 303:
                self.figures.errors[f"submit_{response.status_code}"] += 1
                raise RuntimeError(f"page {page.page} answered {response.status_code}")
            if self.rng.random() < 0.1:  # a double tap: the same form again, recorded once
                again = await self._post(form.action, fields)
                if again.status_code != 303 or again.headers["location"] != response.headers["location"]:
                    self.figures.errors["double_tap_differs"] += 1
            self.figures.submits.append(submitted - started)
            self.figures.acknowledged.append((invitation, page.page))
            self.figures.first_submit = self.figures.first_submit or started
            self.figures.last_submit = submitted
            next_page = await self._get(response.headers["location"])
            self.figures.turns.append(time.perf_counter() - started)
            page = parse(next_page.text)
            if self.think_s:
                await asyncio.sleep(self.rng.uniform(0.5, 1.5) * self.think_s)
        if page.status != "completed":
            raise RuntimeError(f"ended on {page.status!r}")
        self.figures.completed.append(invitation)


async def run_clients(args: argparse.Namespace, base: str, sms_url: str, cases: list[dict[str, Any]],
                      figures: Figures) -> None:
    from surveys.definition import load_survey

    survey = load_survey(ROOT / "config" / "surveys" / f"{SURVEY}.json")
    queue: asyncio.Queue = asyncio.Queue()
    for case in cases:
        queue.put_nowait(case)
    rng = random.Random(12)
    tls = ssl.create_default_context()

    async def client(k: int) -> None:
        customer_rng = random.Random(rng.random())
        async with httpx.AsyncClient(timeout=30, verify=tls) as sms:
            while not queue.empty():
                case = queue.get_nowait()
                customer = Customer(base, sms_url, survey, figures, args.think_ms / 1000, customer_rng,
                                    int(case["phone"][-8:]), tls)
                try:
                    await customer.run(case, sms)
                except (httpx.HTTPError, RuntimeError, ValueError) as exc:
                    figures.errors[type(exc).__name__] += 1
                    if sum(figures.errors.values()) <= 5:
                        print(f"client {k}: {case['id']}: {exc}", file=sys.stderr, flush=True)
                finally:
                    await customer.aclose()

    await asyncio.gather(*(client(k) for k in range(args.clients)))


async def database_counts(url: str, acknowledged: list[tuple[str, str]], completed: list[str]) -> dict[str, int]:
    from sqlalchemy import text

    from gateway.storage.database import create_engine

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT invitation_id, page FROM survey_submissions"))).all()
            answers = (await conn.execute(text(
                "SELECT invitation_id, data FROM survey_events WHERE kind = 'answers'"))).all()
            cases = dict((await conn.execute(text("SELECT id, status FROM survey_invitations"))).all())
            stored = dict((await conn.execute(text("SELECT id, answers FROM survey_invitations"))).all())
    finally:
        await engine.dispose()
    submissions = Counter((i, p) for i, p in rows)
    events = Counter()
    for invitation, data in answers:
        data = json.loads(data) if isinstance(data, str) else data
        events[(invitation, data.get("page"))] += 1
    lost = sum(1 for key in set(acknowledged) if submissions[key] == 0)
    lost += sum(1 for i in completed if cases.get(i) != "completed")
    for invitation in set(i for i, _ in acknowledged):
        value = stored.get(invitation)
        value = json.loads(value) if isinstance(value, str) else (value or {})
        if not value:
            lost += 1
    duplicated = sum(n - 1 for n in submissions.values() if n > 1) + sum(n - 1 for n in events.values() if n > 1)
    return {"lost": lost, "duplicated": duplicated, "submissions_in_db": sum(submissions.values()),
            "answers_events": sum(events.values())}


def start_gateway(tmp: Path, port: int, database_url: str, sms_url: str, log: Path) -> subprocess.Popen:
    shared = ROOT.parent / "shared"
    env = {
        **os.environ,
        "GATEWAY_DATA_DIR": str(tmp), "GATEWAY_DATABASE_URL": database_url,
        "GATEWAY_MODEL_MIRRORS": str(shared / "models"), "GATEWAY_MODEL_CACHE_DIR": str(ROOT / "var" / "models"),
        "GATEWAY_MODEL_URL": "", "GATEWAY_RECOGNIZER_WORKERS": "1", "GATEWAY_SCHEDULER_ENABLED": "false",
        "GATEWAY_SURVEY_BASE_URL": f"http://127.0.0.1:{port}", "GATEWAY_SURVEY_LINK_KEY": "bench-link-key-0123456789",
        "GATEWAY_ALIYUN_SMS_ENDPOINT": sms_url, "GATEWAY_ALIYUN_SMS_SIGN_NAME": "保险服务",
        "GATEWAY_ALIYUN_ACCESS_KEY_ID": "LTAI-bench-key", "GATEWAY_ALIYUN_ACCESS_KEY_SECRET": "bench-secret-0123456789",
        "GATEWAY_SURVEY_OTP_PROVIDER": "aliyun_sms", "GATEWAY_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_live(base: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/livez", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the gateway did not start")


def seed(base: str, count: int) -> list[dict[str, Any]]:
    from survey_site import id_number, phone, policy_row

    rows = [policy_row(n) for n in range(1, count + 1)]
    cases: list[dict[str, Any]] = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for start in range(0, count, 1000):
            response = client.post("/api/policies", json=rows[start:start + 1000])
            response.raise_for_status()
        for start in range(0, count, 500):
            batch = rows[start:start + 500]
            response = client.post(f"/api/surveys/{SURVEY}/invitations",
                                   json=[{"policy_number": r["policy_number"], "channel": "sms"} for r in batch])
            response.raise_for_status()
            body = response.json()
            items = body if isinstance(body, list) else body.get("invitations", body.get("items"))
            for item, row in zip(items, batch):
                if item.get("error"):
                    raise RuntimeError(f"invitation refused: {item}")
                n = int(row["policy_number"][2:])
                cases.append({"id": item["id"], "url": item["url"], "phone": phone(n), "suffix": id_number(n)[-4:]})
    return cases


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--invitations", type=int, default=0, help="default: as many as clients")
    parser.add_argument("--think-ms", type=float, default=200.0, help="mean pause between pages (0: flat out)")
    parser.add_argument("--database-url", default="", help="an empty database (default: SQLite in a temp folder)")
    parser.add_argument("--deadline-s", type=float, default=600.0)
    parser.add_argument("--sms", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sms:
        return serve_sms(args.port)
    invitations = args.invitations or args.clients
    tmp = Path(tempfile.mkdtemp(prefix="survey-load-"))
    database_url = args.database_url or f"sqlite+aiosqlite:///{tmp / 'gateway.db'}"
    started = time.monotonic()
    sms = subprocess.Popen([sys.executable, __file__, "--sms"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gateway = None
    try:
        sms_url = json.loads(sms.stdout.readline())["url"]
        gateway = start_gateway(tmp, port, database_url, sms_url, tmp / "gateway.log")
        wait_live(base, gateway, 120)
        cases = seed(base, invitations)
        print(f"gateway on {base} ({database_url.split(':')[0]}), {len(cases)} invitations in "
              f"{time.monotonic() - started:.1f} s; {args.clients} customers start", flush=True)
        figures = Figures()
        remaining = args.deadline_s - (time.monotonic() - started)
        t0, gateway_cpu0, client_cpu0 = time.perf_counter(), process_cpu_s(gateway.pid), time.process_time()
        asyncio.run(asyncio.wait_for(run_clients(args, base, sms_url, cases, figures), remaining))
        wall = time.perf_counter() - t0
        gateway_cpu = process_cpu_s(gateway.pid) - gateway_cpu0
        client_cpu = time.process_time() - client_cpu0
        counts = asyncio.run(database_counts(database_url, figures.acknowledged, figures.completed))
    finally:
        if gateway is not None:
            stop(gateway)
        stop(sms)
    window = max(1e-9, figures.last_submit - (figures.first_submit or figures.last_submit))
    survey_pages = len(figures.acknowledged) / max(1, len(figures.completed))
    result = {
        "completed_per_s": round(len(figures.acknowledged) / window, 1),
        "p99_ms": round(percentile(figures.submits, 0.99) * 1000, 1),
        "p50_ms": round(statistics.median(figures.submits) * 1000, 1) if figures.submits else 0.0,
        "turn_p99_ms": round(percentile(figures.turns, 0.99) * 1000, 1),
        "lost": counts["lost"], "duplicated": counts["duplicated"],
        "clients": args.clients, "invitations": invitations, "completed_surveys": len(figures.completed),
        "pages": len(figures.acknowledged), "pages_per_survey": round(survey_pages, 1),
        "requests": figures.requests, "requests_per_s": round(figures.requests / wall, 1),
        "think_ms": args.think_ms, "errors": dict(figures.errors), "seconds": round(wall, 1),
        "submissions_in_db": counts["submissions_in_db"], "database": database_url.split(":")[0].split("+")[0],
        "cpus": os.cpu_count(),
        # CPU of the whole customer phase (verification steps included) per acknowledged page:
        # what a submission costs each side, whatever else the shared machine is doing.
        "gateway_cpu_ms_per_page": round(gateway_cpu * 1000 / max(1, len(figures.acknowledged)), 2),
        "client_cpu_ms_per_page": round(client_cpu * 1000 / max(1, len(figures.acknowledged)), 2),
        "gateway_cpu_ms_per_request": round(gateway_cpu * 1000 / max(1, figures.requests), 2),
        "load_average": round(os.getloadavg()[0], 2),
    }
    print(f"{result['pages']} page submissions in {window:.1f} s: {result['completed_per_s']}/s, "
          f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms (page turn p99 {result['turn_p99_ms']} ms); "
          f"{len(figures.completed)}/{invitations} surveys completed; lost {result['lost']}, "
          f"duplicated {result['duplicated']}; CPU a page: gateway {result['gateway_cpu_ms_per_page']} ms, "
          f"client {result['client_cpu_ms_per_page']} ms", flush=True)
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0 if not counts["lost"] and not counts["duplicated"] and not figures.errors else 1


if __name__ == "__main__":
    sys.exit(main())
