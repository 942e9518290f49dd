"""The survey pages over HTTP through a real gateway on loopback: the link, the identity step with
the code read from the fake Aliyun SMS, page by page to the completed page, resuming, double
posts, the contact button, the liveness check against a fake provider, and the audit trail."""

from __future__ import annotations

import hashlib
from typing import Iterator

import httpx
import pytest

from fakes.liveness import FakeLiveness
from survey_site import (HOLDER, HOLDER_MASKED, OTP_TEMPLATE, Customer, Site, answers_for, count_rows, events, id_number, phone,
                         shared_site, survey_site)


@pytest.fixture(scope="module")
def site(tmp_path_factory, model_cache) -> Iterator[Site]:
    with shared_site(tmp_path_factory.mktemp("pages"), model_cache) as site:
        yield site


def verified(site: Site, n: int, **policy) -> tuple[dict, Customer]:
    item, customer = site.new_case(n, **policy)
    customer.open(item["url"])
    assert customer.parsed.status == "verify"
    code = customer.send_code()
    customer.verify(id_number(n)[-4:], code)
    assert customer.parsed.status == "in_progress", customer.parsed.text[:300]
    return item, customer


def test_the_link_opens_a_session_and_redirects_to_a_clean_url(site: Site):
    item, customer = site.new_case(1)
    response = customer.http.get(item["url"])
    assert response.status_code == 303
    assert response.headers["location"] == f"/survey/{item['id']}"
    cookie = response.headers["set-cookie"]
    assert f"sv_{item['id']}=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert "Secure" not in cookie  # plain http on loopback
    for name, value in (("referrer-policy", "no-referrer"), ("cache-control", "no-store")):
        assert response.headers[name] == value
    assert "script-src 'none'" in response.headers["content-security-policy"]
    page = customer.get(response.headers["location"])
    assert page.status_code == 200 and customer.parsed.status == "verify"
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    # Behind an https proxy the cookie is Secure.
    https = httpx.get(item["url"], headers={"x-forwarded-proto": "https"})
    assert "Secure" in https.headers["set-cookie"]


def test_nothing_personal_before_verification_and_masked_after(site: Site):
    item, customer = site.new_case(2)
    customer.open(item["url"])
    html = customer.last.text
    number = phone(2)
    for secret in (HOLDER, number, number[-4:], "PS000002", id_number(2), "鑫享"):
        assert secret not in html
    assert not HOLDER_MASKED.search(html) and "张*" not in html
    form = customer.form
    assert form.method == "post" and {"csrf", "submission_key"} <= form.hidden.keys()
    assert ("action", "send_code") in form.buttons and ("action", "verify") in form.buttons
    assert 'name="id_suffix"' in html and 'name="otp"' in html
    code = customer.send_code()
    (sms,) = [s for s in site.sms.sends if s.to == number]
    assert sms.template == OTP_TEMPLATE and sms.params == {"code": code} and len(code) == 6
    assert customer.parsed.status == "verify" and "验证码已发送" in customer.parsed.text
    customer.verify(id_number(2)[-4:], code)
    text = customer.parsed.text
    assert HOLDER_MASKED.search(text) and f"{number[:3]}****{number[-4:]}" in text
    assert HOLDER not in text and number not in text


def test_a_survey_from_the_link_to_the_completed_page(site: Site):
    item, customer = verified(site, 3)
    first = customer.parsed
    total = int(first.text.split("/共")[1].split("页")[0])
    assert f"第1页/共{total}页" in first.text
    pages = customer.finish()
    assert len(pages) == total and len(set(pages)) == total
    assert 'data-survey-status="completed"' in customer.last.text
    case = site.invitation(item["id"])
    assert case["status"] == "completed" and case["outcome"] == "success" and not case["problem"]
    assert set(case["answers"]) >= {q.name for q in site.survey.questions() if q.name in case["answers"]}
    # The link used again: the case is done, said plainly.
    again = Customer(site.base, site.sms, site.survey, phone(3))
    again.open(item["url"])
    assert again.last.status_code == 410 and again.parsed.status == "completed" and "已经完成" in again.parsed.text


def test_an_unexpected_answer_makes_a_problem_case(site: Site):
    item, customer = verified(site, 4)
    expected = [q.name for q in site.survey.questions() if q.correct_answer is not None]
    first_page_questions = set(customer.form.radios) & set(expected)
    wrong = {sorted(first_page_questions)[0]}
    customer.answer_page(wrong=wrong)
    customer.finish()
    case = site.invitation(item["id"])
    assert case["status"] == "completed" and case["outcome"] == "problem" and case["problem"]
    assert [p["question"] for p in case["problems"]] == sorted(wrong)


def test_a_half_done_survey_resumes_in_a_new_browser_with_a_fresh_code(make_settings):
    # The customer comes back at once here: two codes a minute, so the test need not wait for the next.
    with survey_site(make_settings, survey_otp_per_minute=2) as site:
        resume(site)


def resume(site: Site) -> None:
    item, customer = verified(site, 5)
    first_page = customer.parsed.page
    customer.answer_page(text="第一次")
    second_page = customer.parsed.page
    assert second_page != first_page
    customer.close()  # the browser closed: its cookie is gone
    later = site.customer(5)
    later.open(item["url"])
    assert later.parsed.status == "verify"  # a new session needs a new code
    code = later.send_code()
    later.verify(id_number(5)[-4:], code)
    assert later.parsed.status == "in_progress" and later.parsed.page == second_page
    later.get(f"/survey/{item['id']}?page={first_page}")  # what was answered is still there
    assert later.parsed.page == first_page and "checked" in later.last.text
    later.finish()
    assert site.invitation(item["id"])["status"] == "completed"


def test_the_same_form_posted_twice_is_recorded_once(site: Site):
    item, customer = verified(site, 6)
    fields = [*answers_for(customer.form, site.survey), ("action", "next")]
    first = customer.post(fields, follow=False)
    second = customer.post(fields, follow=False)  # a double tap, a retry, a back-button re-post
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert count_rows(site, "SELECT count(*) FROM survey_submissions WHERE invitation_id = :i", i=item["id"]) == 1
    answer_events = [e for e in events(site, item["id"]) if e["kind"] == "answers"]
    assert len(answer_events) == 1


def test_an_incomplete_page_comes_back_with_its_errors_and_nothing_saved(site: Site):
    item, customer = verified(site, 7)
    page = customer.parsed.page
    response = customer.post([*customer.form.hidden.items(), ("action", "next")])
    assert response.status_code == 422 and customer.parsed.page == page
    assert "此题为必答题" in customer.parsed.text or "请选择" in customer.parsed.text
    assert count_rows(site, "SELECT count(*) FROM survey_submissions WHERE invitation_id = :i", i=item["id"]) == 0
    customer.answer_page()  # the form that came back still posts
    assert customer.parsed.page != page


def test_back_goes_to_the_previous_page_with_its_answers(site: Site):
    item, customer = verified(site, 8)
    first = customer.parsed.page
    customer.answer_page()
    customer.post([*customer.form.hidden.items(), ("action", "back")])
    assert customer.parsed.page == first and " checked" in customer.last.text


def test_the_contact_button_on_every_page_records_one_follow_up(site: Site):
    item, customer = site.new_case(9)
    customer.open(item["url"])
    assert ("action", "contact") in customer.form.buttons  # already on the verification page
    customer.post([*customer.form.hidden.items(), ("action", "contact")])
    assert customer.last.status_code == 200 and customer.parsed.status == "contact_requested"
    assert "已收到您的请求" in customer.parsed.text
    case = site.invitation(item["id"])
    assert case.get("contact_requested_at")
    assert count_rows(site, "SELECT count(*) FROM outbox WHERE topic = 'survey_followup' AND aggregate_id = :i",
                      i=item["id"]) == 1
    customer.get(f"/survey/{item['id']}")
    code = customer.send_code()
    customer.verify(id_number(9)[-4:], code)
    while customer.parsed.status == "in_progress":
        assert ("action", "contact") in customer.form.buttons
        customer.answer_page()
    assert ("action", "contact") in customer.form.buttons  # the completed page too


def test_codes_are_limited_to_one_a_minute(site: Site):
    item, customer = site.new_case(10)
    customer.open(item["url"])
    customer.send_code()
    customer.post([*customer.form.hidden.items(), ("action", "send_code")])
    assert "1分钟后再试" in customer.parsed.text
    assert len(customer.codes()) == 1


def test_a_wrong_code_is_said_and_the_right_one_then_passes(site: Site):
    item, customer = site.new_case(11)
    customer.open(item["url"])
    code = customer.send_code()
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    customer.verify(id_number(11)[-4:], wrong)
    assert customer.parsed.status == "verify" and "不正确" in customer.parsed.text
    customer.verify(id_number(11)[-4:].lower(), code)  # an X may be typed small
    assert customer.parsed.status == "in_progress"


def test_a_failing_sms_provider_gets_a_clear_message(site: Site):
    item, customer = site.new_case(12)
    customer.open(item["url"])
    site.sms.error_next("isv.MOBILE_NUMBER_ILLEGAL")
    customer.post([*customer.form.hidden.items(), ("action", "send_code")])
    assert customer.last.status_code == 200 and "验证码发送失败" in customer.parsed.text


def test_every_page_shown_is_in_the_trail_with_the_hash_of_its_bytes(site: Site):
    item, customer = verified(site, 13)
    served = hashlib.sha256(customer.last.content).hexdigest()
    customer.finish()
    done = hashlib.sha256(customer.last.content).hexdigest()
    trail = events(site, item["id"])
    shown = [{k: e["data"][k] for k in ("page", "sha256")} for e in trail if e["kind"] == "page_shown"]
    assert {"page": "_done", "sha256": done} in shown
    assert served in {s["sha256"] for s in shown}
    kinds = [e["kind"] for e in trail]
    for kind in ("opened", "session_started", "otp_sent", "identity_passed", "page_shown", "answers", "completed"):
        assert kind in kinds, kinds
    assert all(e.get("user_agent") for e in trail if e["kind"] == "page_shown")
    assert all(e.get("client_ip") == "127.0.0.1" for e in trail if e["kind"] == "page_shown")


def test_the_stylesheet_is_served_by_the_gateway(site: Site):
    response = httpx.get(f"{site.base}/survey-static/survey.css")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/css")
    assert "font-size" in response.text and response.headers["cache-control"] == "no-store"
    assert httpx.get(f"{site.base}/survey-static/../settings.py").status_code == 404


def test_a_liveness_check_with_its_own_consent(make_settings):
    with FakeLiveness(api_key="lv-key", score=0.93) as provider, \
            survey_site(make_settings, survey_liveness_url=provider.url, survey_liveness_api_key="lv-key") as site:
        item, customer = site.new_case(14)
        customer.open(item["url"])
        customer.verify(id_number(14)[-4:], customer.send_code())
        assert customer.parsed.status == "liveness"
        customer.post([*customer.form.hidden.items(), ("action", "liveness_start")])
        assert customer.parsed.status == "liveness" and "请先勾选同意" in customer.parsed.text
        assert not provider.checks  # no consent, no check
        response = customer.post([*customer.form.hidden.items(), ("liveness_consent", "yes"),
                                  ("action", "liveness_start")], follow=False)
        assert response.status_code == 303 and response.headers["location"].startswith(provider.url)
        back = httpx.get(response.headers["location"], follow_redirects=False)  # the provider's page
        assert back.status_code == 303
        customer.get(back.headers["location"])
        assert customer.parsed.status == "in_progress"
        (check,) = provider.checks.values()
        results = [{k: v for k, v in e["data"].items() if k not in ("client_ip", "user_agent")}
                   for e in events(site, item["id"]) if e["kind"] == "liveness" and e["data"].get("step") == "result"]
        assert results == [{"step": "result", "result_id": check.result_id, "score": 0.93, "passed": True}]
        assert all(auth == "Bearer lv-key" for _, auth in provider.requests)
        assert provider.url in customer.last.headers["content-security-policy"]
        customer.finish()
