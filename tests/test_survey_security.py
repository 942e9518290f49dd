"""The survey pages under attack: tampered, made-up, expired, replayed and revoked links; a GET never
using a link up; guessing the code until the case locks; script in a free-text answer coming
back escaped on the pages and the evidence page; forms without their CSRF token, with another
session's, or with a made-up submission key. Clear pages with the right status, never a trace."""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Iterator

import httpx
import pytest

from survey_site import Site, answers_for, count_rows, id_number, past_deadline, shared_site, token_of
from surveys.tokens import TOKEN_LENGTH

SCRIPT = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def site(tmp_path_factory, model_cache) -> Iterator[Site]:
    with shared_site(tmp_path_factory.mktemp("security"), model_cache) as site:
        yield site


def assert_clear_page(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("text/html")
    assert words in response.text
    assert "Traceback" not in response.text and "Error" not in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "script-src 'none'" in response.headers["content-security-policy"]


def test_garbage_and_tampered_tokens_get_a_clear_404(site: Site):
    item, _ = site.new_case(101)
    token = token_of(item["url"])
    assert len(token) == TOKEN_LENGTH
    tampered = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    for bad in (tampered, token[:-1], token + "0", "x" * TOKEN_LENGTH, "%27%3B--" + "a" * 7, "..%2F..%2Fetc"):
        response = httpx.get(f"{site.base}/s/{bad}", follow_redirects=False)
        assert_clear_page(response, 404, "链接无效")
        assert "set-cookie" not in response.headers
    unknown = httpx.get(f"{site.base}/survey/{'0' * 32}")
    assert_clear_page(unknown, 404, "链接无效")
    assert_clear_page(httpx.get(f"{site.base}/survey/not-an-id"), 404, "链接无效")


def test_a_get_never_uses_the_link_up(site: Site):
    item, customer = site.new_case(102)
    for _ in range(3):  # the SMS app's preview, WeChat's, a second tap
        preview = httpx.get(item["url"], follow_redirects=False)
        assert preview.status_code == 303
    customer.open(item["url"])
    assert customer.parsed.status == "verify"
    customer.verify(id_number(102)[-4:], customer.send_code())
    customer.finish()
    assert site.invitation(item["id"])["status"] == "completed"
    assert count_rows(site, "SELECT count(*) FROM survey_sessions WHERE invitation_id = :i", i=item["id"]) == 4


def test_an_expired_link_and_its_open_session_get_a_clear_page(site: Site):
    item, customer = site.new_case(103, receipt=date.today() - timedelta(days=10))
    customer.open(item["url"])
    hidden = dict(customer.form.hidden)
    past_deadline(site, item["id"])
    assert_clear_page(httpx.get(item["url"], follow_redirects=False), 410, "已过期")
    assert_clear_page(customer.http.get(f"/survey/{item['id']}"), 410, "已过期")
    posted = customer.http.post(f"/survey/{item['id']}", data={**hidden, "action": "send_code"})
    assert_clear_page(posted, 410, "已过期")


def test_a_revoked_link_and_its_open_session_get_a_clear_page(site: Site):
    item, customer = site.new_case(104)
    customer.open(item["url"])
    hidden = dict(customer.form.hidden)
    site.revoke(item["id"])
    assert_clear_page(httpx.get(item["url"], follow_redirects=False), 410, "已失效")
    assert_clear_page(customer.http.get(f"/survey/{item['id']}"), 410, "已失效")
    posted = customer.http.post(f"/survey/{item['id']}", data={**hidden, "action": "send_code"})
    assert_clear_page(posted, 410, "已失效")
    assert customer.codes() == []


def test_a_completed_case_replayed_changes_nothing(site: Site):
    item, customer = site.new_case(105)
    customer.open(item["url"])
    customer.verify(id_number(105)[-4:], customer.send_code())
    customer.get(f"/survey/{item['id']}")
    last_fields: list = []
    while customer.parsed.status == "in_progress":
        last_fields = [*answers_for(customer.form, site.survey), ("action", "next")]
        customer.post(last_fields)
    before = site.invitation(item["id"])
    submissions = count_rows(site, "SELECT count(*) FROM survey_submissions WHERE invitation_id = :i", i=item["id"])
    replay = customer.post(last_fields) if customer.parsed.forms else None  # the last page's form re-posted
    customer.http.post(f"/survey/{item['id']}", data=dict(last_fields))
    after = site.invitation(item["id"])
    assert after["completed_at"] == before["completed_at"] and after["answers"] == before["answers"]
    assert count_rows(site, "SELECT count(*) FROM survey_submissions WHERE invitation_id = :i",
                      i=item["id"]) == submissions
    assert replay is None or customer.parsed.status == "completed"
    assert_clear_page(httpx.get(item["url"], follow_redirects=False), 410, "已经完成")


def test_guessing_the_code_locks_the_case(site: Site):
    item, customer = site.new_case(106)
    customer.open(item["url"])
    code = customer.send_code()
    suffix = id_number(106)[-4:]
    guesses = [f"{(int(code) + k) % 1000000:06d}" for k in range(1, 6)]
    for guess in guesses:
        customer.verify(suffix, guess)
    assert customer.last.status_code == 423 and customer.parsed.status == "locked"
    assert "锁定" in customer.parsed.text
    customer.post([*customer.form.hidden.items(), ("id_suffix", suffix), ("otp", code), ("action", "verify")])
    assert customer.parsed.status == "locked"  # even the right code now
    fresh = site.customer(106)  # another browser, a new session: still locked
    fresh.open(item["url"])
    assert fresh.parsed.status == "locked" and fresh.last.status_code == 423
    assert ("action", "contact") in fresh.form.buttons  # a call can still be asked for


def test_a_wrong_id_suffix_with_the_right_code_fails(site: Site):
    item, customer = site.new_case(107)
    customer.open(item["url"])
    code = customer.send_code()
    suffix = id_number(107)[-4:]
    other = "0000" if suffix != "0000" else "1111"
    customer.verify(other, code)
    assert customer.parsed.status == "verify" and "不正确" in customer.parsed.text


def test_script_in_a_free_text_answer_comes_back_escaped(site: Site):
    item, customer = site.new_case(108)
    customer.open(item["url"])
    customer.verify(id_number(108)[-4:], customer.send_code())
    text_pages = []
    while customer.parsed.status == "in_progress":
        if customer.form.texts:
            text_pages.append(customer.parsed.page)
        customer.answer_page(text=SCRIPT)
    assert text_pages, "the survey has a free-text question"
    customer.get(f"/survey/{item['id']}?page={text_pages[0]}")
    assert customer.parsed.status in ("completed", "in_progress")
    evidence = site.evidence(item["id"])
    assert evidence.status_code == 200
    for html in (evidence.text,):
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;" in html
    assert SCRIPT in str(site.invitation(item["id"])["answers"].values())  # stored as typed


def test_script_in_an_answer_is_escaped_when_its_page_comes_back(site: Site):
    item, customer = site.new_case(109)
    customer.open(item["url"])
    customer.verify(id_number(109)[-4:], customer.send_code())
    while customer.parsed.status == "in_progress" and not customer.form.texts:
        customer.answer_page()
    form = customer.form
    assert form.texts
    page = customer.parsed.page
    # Sent back with an error elsewhere on the page: the text comes back in the form, escaped.
    fields = [(k, v) for k, v in answers_for(form, site.survey, text=SCRIPT) if k not in form.radios]
    fields += [(name, "99") for name in form.radios]  # not among the choices
    response = customer.post([*fields, ("action", "next")])
    assert response.status_code == 422 and customer.parsed.page == page
    assert "<script>alert" not in response.text and "<img src=x" not in response.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in response.text


def test_forms_without_their_csrf_token_or_with_another_sessions_are_refused(site: Site):
    item, customer = site.new_case(110)
    customer.open(item["url"])
    customer.verify(id_number(110)[-4:], customer.send_code())
    fields = [*answers_for(customer.form, site.survey), ("action", "next")]
    without = [(k, v) for k, v in fields if k != "csrf"]
    response = customer.post(without, follow=False)
    assert_clear_page(response, 403, "已被拒绝")
    other = site.customer(110)
    other.open(item["url"])  # another session of the same case
    theirs = other.form.hidden["csrf"]
    assert theirs != customer.form.hidden["csrf"]
    swapped = [(k, theirs if k == "csrf" else v) for k, v in fields]
    assert_clear_page(customer.post(swapped, follow=False), 403, "已被拒绝")
    # No cookie at all (a cross-site form: SameSite=Lax keeps the cookie home).
    assert_clear_page(httpx.post(f"{site.base}/survey/{item['id']}", data=dict(fields)), 403, "已被拒绝")
    assert count_rows(site, "SELECT count(*) FROM survey_submissions WHERE invitation_id = :i", i=item["id"]) == 0
    # A made-up submission key with the right CSRF token.
    forged = [(k, "forged.0000" if k == "submission_key" else v) for k, v in fields]
    assert customer.post(forged, follow=False).status_code == 403
    assert customer.post(fields, follow=False).status_code == 303  # the genuine form still goes


def test_the_code_is_refused_without_a_csrf_token(site: Site):
    item, customer = site.new_case(111)
    customer.open(item["url"])
    response = customer.http.post(f"/survey/{item['id']}", data={"action": "send_code"})
    assert_clear_page(response, 403, "已被拒绝")
    assert customer.codes() == []


def test_a_timed_out_session_needs_the_link_and_a_fresh_code(make_settings):
    from survey_site import survey_site

    with survey_site(make_settings, survey_session_ttl_s=2.0) as site:
        item, customer = site.new_case(112)
        customer.open(item["url"])
        customer.verify(id_number(112)[-4:], customer.send_code())
        assert customer.parsed.status == "in_progress"
        time.sleep(2.5)
        response = customer.http.get(f"/survey/{item['id']}")
        assert_clear_page(response, 403, "超时")
        customer.open(item["url"])  # the link again: a new session, not yet verified
        assert customer.parsed.status == "verify"
