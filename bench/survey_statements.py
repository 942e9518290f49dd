"""SQL statements and transactions per survey page turn: not noisy, unlike the load figures.

    python bench/survey_statements.py [--server-url postgresql+asyncpg://postgres@127.0.0.1:5432/NAME]

Runs a gateway in this process (as the tests do: uvicorn in a thread, SQLite in a temp folder by
default, or a fresh database on --server-url, dropped afterwards; the fake Aliyun SMS), one
customer through one survey, and counts with a SQLAlchemy event listener the statements the gateway sent to the database (BEGIN/SAVEPOINT included) and
the commits, per request: for each page, the POST of its answers and the GET of the next page it
redirects to. The last output line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from sqlalchemy import event  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

COUNTS: Counter = Counter()
LOCK = threading.Lock()


@event.listens_for(Engine, "before_cursor_execute")
def _statement(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
    with LOCK:
        COUNTS["statements"] += 1
        COUNTS[statement.split(None, 1)[0].upper()] += 1


@event.listens_for(Engine, "commit")
def _commit(conn):  # type: ignore[no-untyped-def]
    with LOCK:
        COUNTS["commits"] += 1


def snapshot() -> Counter:
    with LOCK:
        return Counter(COUNTS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-url", default="", help="a PostgreSQL server (postgresql+asyncpg://...): a fresh "
                        "database is made on it and dropped afterwards (default: SQLite in a temp folder)")
    args = parser.parse_args()
    import os

    from conftest import isolated_database

    tmp = Path(tempfile.mkdtemp(prefix="survey-statements-"))
    if args.server_url:
        os.environ["GATEWAY_TEST_DATABASE_URL"] = args.server_url
    else:
        os.environ.pop("GATEWAY_TEST_DATABASE_URL", None)
    with isolated_database(tmp) as url:
        return count(url, tmp)


def count(url: str, tmp: Path) -> int:

    from conftest import running_gateway
    from fakes.aliyun_sms import FakeAliyunSms
    from gateway.settings import load_settings
    from survey_site import Customer, answers_for, id_number, policy_row, site_settings
    from surveys.definition import load_survey
    from conftest import free_port

    base_settings = load_settings(environ={})

    def make_settings(**overrides):  # type: ignore[no-untyped-def]
        values = dict(data_dir=str(tmp), database_url=url, model_cache_dir=str(ROOT / "var" / "models"),
                      model_mirrors=(str(ROOT.parent / "shared" / "models"),), model_url="", recognizer_workers=1)
        values.update(overrides)
        return base_settings.replace(**values)

    survey = load_survey(ROOT / "config" / "surveys" / "new_contract.json")
    turns: list[dict[str, int]] = []
    with FakeAliyunSms() as sms:
        port = free_port()
        settings = site_settings(make_settings, sms, port)
        with running_gateway(settings, port=port) as address:
            import httpx

            base = f"http://{address}"
            n = 7
            httpx.post(f"{base}/api/policies", json=[policy_row(n)], timeout=30).raise_for_status()
            body = httpx.post(f"{base}/api/surveys/new_contract/invitations",
                              json=[{"policy_number": f"PS{n:06d}", "channel": "sms"}], timeout=30).json()
            (item,) = body if isinstance(body, list) else body.get("invitations", body.get("items"))
            customer = Customer(base, sms, survey, f"138{n:08d}"[-11:])
            customer.open(item["url"])
            code = customer.send_code()
            customer.verify(id_number(n)[-4:], code)
            while customer.parsed.status == "in_progress":
                fields = [*answers_for(customer.form, survey, text="无"), ("action", "next")]
                before = snapshot()
                response = customer.post(fields, follow=False)
                posted = snapshot()
                assert response.status_code == 303, response.text[:300]
                customer.get(response.headers["location"])
                after = snapshot()
                post, get = posted - before, after - posted
                turns.append({"post_statements": post["statements"], "post_commits": post["commits"],
                              "get_statements": get["statements"], "get_commits": get["commits"],
                              "post_writes": post["INSERT"] + post["UPDATE"] + post["DELETE"],
                              "get_writes": get["INSERT"] + get["UPDATE"] + get["DELETE"]})
            customer.close()
    middle = turns[:-1] or turns  # the last page's POST also completes the case
    result = {
        "database": url.split(":")[0].split("+")[0], "pages": len(turns),
        "statements_per_turn": round(sum(t["post_statements"] + t["get_statements"] for t in middle) / len(middle), 1),
        "commits_per_turn": round(sum(t["post_commits"] + t["get_commits"] for t in middle) / len(middle), 1),
        "last_turn_statements": turns[-1]["post_statements"] + turns[-1]["get_statements"],
        "turns": turns,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
