"""The survey in a real browser: Debian's headless Chromium at a phone's viewport (390x844, a mobile
user agent) through Selenium and /usr/bin/chromedriver, against a real gateway and the fake
Aliyun SMS (the code read from what it was sent). Completes a survey, resumes a half-done one in
a new browser with JavaScript switched off, and sees the error pages. Screenshots are kept under
var/test-artifacts/survey/ (git-ignored); their paths are printed and recorded as test properties."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Iterator

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ROOT
from survey_site import HOLDER_MASKED, Site, id_number, past_deadline, phone, shared_site

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "var" / "test-artifacts" / "survey"
PHONE_UA = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0.0.0 Mobile Safari/537.36")


@pytest.fixture(scope="module")
def site(tmp_path_factory, model_cache) -> Iterator[Site]:
    # A resumed visit asks for a fresh code soon after the first: the per-minute limit is raised here.
    with shared_site(tmp_path_factory.mktemp("browser"), model_cache, survey_otp_per_minute=5,
                     survey_otp_per_hour=20) as site:
        yield site


@contextlib.contextmanager
def phone_browser(*, javascript: bool = True) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-extensions", "--no-first-run", "--lang=zh-CN"):
        options.add_argument(argument)
    # Touch emulation only with script on: chromedriver's taps need script in the page (a click then hangs).
    options.add_experimental_option("mobileEmulation", {
        "deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 3.0, "touch": javascript}, "userAgent": PHONE_UA})
    if not javascript:
        # Blink's own switch: the page runs no script at all. (The content-settings preference
        # also stops chromedriver's own helpers, and a click then never returns.)
        options.add_argument("--blink-settings=scriptEnabled=false")
        # chromedriver's wait for a page load needs script in the page: the tests wait themselves.
        options.page_load_strategy = "none"
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


class Shots:
    """Screenshots of one test, numbered in order."""

    def __init__(self, name: str, record_property) -> None:
        self.name = name
        self.paths: list[Path] = []
        self.record = record_property
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for old in ARTIFACTS.glob(f"{name}-*.png"):
            old.unlink()

    def take(self, driver: WebDriver, label: str) -> Path:
        path = ARTIFACTS / f"{self.name}-{len(self.paths) + 1:02d}-{re.sub(r'[^a-z0-9_]+', '_', label.lower())}.png"
        driver.save_screenshot(str(path))
        self.paths.append(path)
        print(f"screenshot: {path.relative_to(ROOT)}")
        self.record(f"screenshot_{len(self.paths):02d}", str(path.relative_to(ROOT)))
        return path


def status(driver: WebDriver) -> str:
    # get_dom_attribute reads the DOM without injecting a script (this works with JavaScript off too).
    return driver.find_element(By.TAG_NAME, "body").get_dom_attribute("data-survey-status") or ""


def page_name(driver: WebDriver) -> str:
    return driver.find_element(By.TAG_NAME, "body").get_dom_attribute("data-survey-page") or ""


def _landed(driver: WebDriver, old) -> None:
    """Wait for the next page (post-redirect-get) to replace `old` and be shown in full."""
    # Mid-navigation a look-up may hit the document being replaced: such errors mean "not yet".
    wait = WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,))
    wait.until(expected_conditions.staleness_of(old))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "body[data-survey-status] footer"))


def go(driver: WebDriver, url: str) -> None:
    old = driver.find_element(By.TAG_NAME, "html")
    driver.get(url)
    _landed(driver, old)


def click(driver: WebDriver, action: str) -> None:
    """Tap a submit button and wait for the page the post-redirect-get lands on."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, f'button[name="action"][value="{action}"]').click()
    _landed(driver, old)


def verify(driver: WebDriver, site: Site, n: int, shots: Shots) -> None:
    assert status(driver) == "verify"
    before = len([s for s in site.sms.sends if s.to == phone(n)])
    click(driver, "send_code")
    codes = [s.params["code"] for s in site.sms.sends if s.to == phone(n)]
    assert len(codes) == before + 1 and "验证码已发送" in driver.page_source
    driver.find_element(By.NAME, "id_suffix").send_keys(id_number(n)[-4:])
    driver.find_element(By.NAME, "otp").send_keys(codes[-1])
    shots.take(driver, "verify")
    click(driver, "verify")


def answer_page(driver: WebDriver, site: Site) -> None:
    """Tap the expected answer of every question on the page (the first choice where any will do)."""
    form = driver.find_element(By.CSS_SELECTOR, 'form[method="post"]')
    names = []
    for element in form.find_elements(By.CSS_SELECTOR, "input[type=radio], input[type=checkbox], input[type=text], textarea"):
        name = element.get_dom_attribute("name")
        if name not in names:
            names.append(name)
    for name in names:
        question = site.survey.question(name)
        expected = question.correct_answer
        if question.type in ("text", "comment"):
            form.find_element(By.NAME, name).send_keys("无")
            continue
        values = [expected] if not isinstance(expected, list) else expected
        if expected is None:
            values = [form.find_elements(By.NAME, name)[0].get_dom_attribute("value")]
        for value in values:
            value = ("true" if value else "false") if isinstance(value, bool) else str(value)
            # The label is the tap target (the whole row), as a thumb would hit it.
            form.find_element(By.CSS_SELECTOR, f'input[name="{name}"][value="{value}"]').find_element(
                By.XPATH, "./ancestor::label").click()


def finish(driver: WebDriver, site: Site, shots: Shots) -> list[str]:
    pages = []
    while status(driver) == "in_progress":
        pages.append(page_name(driver))
        assert re.search(r"第\d+页/共\d+页", driver.page_source)
        answer_page(driver, site)
        shots.take(driver, f"page_{len(pages)}")
        click(driver, "next")
    return pages


def test_a_phone_completes_a_survey_end_to_end(site: Site, record_property):
    shots = Shots("complete", record_property)
    item, _ = site.new_case(201)
    with phone_browser() as driver:
        go(driver, item["url"])
        assert driver.current_url.endswith(f"/survey/{item['id']}")  # the token is gone from the address
        assert driver.execute_script("return window.innerWidth") == 390
        verify(driver, site, 201, shots)
        assert HOLDER_MASKED.search(driver.find_element(By.TAG_NAME, "body").text)
        pages = finish(driver, site, shots)
        assert status(driver) == "completed"
        assert driver.find_element(By.CSS_SELECTOR, '[data-survey-status="completed"]')
        shots.take(driver, "completed")
    assert len(pages) >= 2 and all(p.exists() and p.stat().st_size > 5000 for p in shots.paths)
    assert site.invitation(item["id"])["status"] == "completed"


def test_a_half_done_survey_resumes_in_a_new_browser_with_javascript_off(site: Site, record_property):
    shots = Shots("resume", record_property)
    item, _ = site.new_case(202)
    with phone_browser() as driver:
        go(driver, item["url"])
        verify(driver, site, 202, shots)
        first = page_name(driver)
        answer_page(driver, site)
        click(driver, "next")
        second = page_name(driver)
        assert second != first
        shots.take(driver, "left_here")
    with phone_browser(javascript=False) as driver:  # another browser: no cookie, no script
        driver.get("data:text/html,<p id=probe>off</p><script>document.getElementById('probe').textContent='on'</script>")
        probe = WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "probe"))
        assert probe[0].text == "off"
        go(driver, item["url"])
        assert status(driver) == "verify"  # a fresh code for the new session
        verify(driver, site, 202, shots)
        assert page_name(driver) == second
        shots.take(driver, "resumed")
        finish(driver, site, shots)
        assert status(driver) == "completed"
        shots.take(driver, "completed")
    assert site.invitation(item["id"])["status"] == "completed"


def test_the_error_pages_in_a_browser(site: Site, record_property):
    shots = Shots("errors", record_property)
    item, _ = site.new_case(203)
    expired, _ = site.new_case(204)
    past_deadline(site, expired["id"])
    revoked, _ = site.new_case(205)
    site.revoke(revoked["id"])
    token = item["url"].rsplit("/", 1)[-1]
    tampered = item["url"][: -len(token)] + token[:-1] + ("a" if token[-1] != "a" else "b")
    with phone_browser(javascript=False) as driver:
        for url, words, label in ((tampered, "链接无效", "tampered"), (expired["url"], "已过期", "expired"),
                                  (revoked["url"], "已失效", "revoked")):
            go(driver, url)
            assert words in driver.page_source, label
            assert "Traceback" not in driver.page_source
            shots.take(driver, label)
        go(driver, item["url"])
        click(driver, "send_code")
        code = [s.params["code"] for s in site.sms.sends if s.to == phone(203)][-1]
        for k in range(1, 6):
            wrong = f"{(int(code) + k) % 1000000:06d}"
            driver.find_element(By.NAME, "id_suffix").send_keys(id_number(203)[-4:])
            driver.find_element(By.NAME, "otp").send_keys(wrong)
            click(driver, "verify")
        assert status(driver) == "locked" and "锁定" in driver.page_source
        shots.take(driver, "locked")
        click(driver, "contact")
        assert status(driver) == "contact_requested"
        shots.take(driver, "contact")
