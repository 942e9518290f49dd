"""The survey rules, pure: a posted page read into typed answers and Chinese errors, problems and the
outcome, products and cooling-off deadlines, link tokens, one-time code limits, the audit chain and
the signals of answers given by someone else."""

from __future__ import annotations

import random
import string
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from surveys import audit, otp, signals, tokens
from surveys.answers import (Problem, is_complete, missing, next_page, outcome, problems, progress, read_page,
                             visible_answers)
from surveys.definition import load_survey, parse_survey
from surveys.errors import SurveyError
from surveys.products import Catalog, deadline, mask_name

ROOT = Path(__file__).resolve().parent.parent
SURVEYS = ROOT / "config" / "surveys"
ZONE = ZoneInfo("Asia/Shanghai")
UTC = timezone.utc


@pytest.fixture(scope="module")
def survey():
    return load_survey(SURVEYS / "new_contract.json")


@pytest.fixture(scope="module")
def catalog():
    return Catalog.load(SURVEYS / "products.yaml")


MIXED = parse_survey({"version": "1", "pages": [{"name": "p", "elements": [
    {"type": "radiogroup", "name": "how", "title": "投保渠道", "isRequired": True,
     "choices": ["柜面", {"value": "agent", "text": "业务员"}]},
    {"type": "checkbox", "name": "told", "title": "业务员告知了哪些内容", "choices": ["coverage", "exclusions", "fees"],
     "isRequired": True, "correctAnswer": ["coverage", "exclusions"]},
    {"type": "boolean", "name": "ok", "title": "是否本人", "isRequired": True, "correctAnswer": True},
    {"type": "rating", "name": "score", "title": "满意度", "rateMin": 1, "rateMax": 5},
    {"type": "text", "name": "city", "title": "所在城市", "maxLength": 10},
    {"type": "comment", "name": "other", "title": "其他"},
    {"type": "text", "name": "regular_only", "visibleIf": "{payment} = 'regular'", "isRequired": True},
]}]}, default_name="mixed")
REGULAR = {"payment": "regular"}


def _read(form, context=REGULAR):
    return read_page(MIXED, MIXED.pages[0], form, {}, context)


def test_a_good_page_is_read_into_typed_answers():
    read = _read({"how": ["agent"], "told": ["exclusions", "coverage", "coverage"], "ok": ["true"], "score": ["4"],
                  "city": ["  上海 "], "other": ["第一行\r\n第二行\x00"], "regular_only": ["x"], "csrf": ["t"]})
    assert read.ok and read.errors == {}
    assert read.answers == {"how": "agent", "told": ["coverage", "exclusions"], "ok": True, "score": 4,
                            "city": "上海", "other": "第一行\n第二行", "regular_only": "x"}
    assert _read({"how": "柜面", "told": ["fees"], "ok": ["false"]}, {}).answers == {"how": "柜面", "told": ["fees"], "ok": False}


@pytest.mark.parametrize("form, errors", [
    ({"how": ["传真"]}, {"how": "所选选项无效，请重新选择"}),
    ({"how": ["agent", "柜面"]}, {"how": "请选择一项"}),
    ({"told": ["coverage", "bribes"]}, {"told": "所选选项无效，请重新选择"}),
    ({"ok": ["yes"]}, {"ok": "请选择“是”或“否”"}),
    ({"score": ["6"]}, {"score": "请选择1到5之间的分数"}),
    ({"score": ["abc"]}, {"score": "请选择1到5之间的分数"}),
    ({"score": ["-1"]}, {"score": "请选择1到5之间的分数"}),
    ({"score": ["٣"]}, {"score": "请选择1到5之间的分数"}),
    ({"city": ["乌鲁木齐市天山区某某街道十号"]}, {"city": "最多填写10个字（现有14个字）"}),
    ({"other": ["长" * 2001]}, {"other": "最多填写2000个字（现有2001个字）"}),
    ({"regular_only": ["   "]}, {"regular_only": "此题为必答题"}),
])
def test_bad_values_are_errors_in_chinese_and_never_stored(form, errors):
    base = {"how": ["agent"], "told": ["coverage"], "ok": ["true"], "regular_only": ["x"]}
    read = _read({**base, **form})
    for name, message in errors.items():
        assert read.errors[name] == message
        assert name not in read.answers
    assert not read.ok


def test_required_questions_left_empty():
    assert _read({"how": [""], "score": [""]}).errors == {
        "how": "请选择一项", "told": "请至少选择一项", "ok": "请选择一项", "regular_only": "此题为必答题"}
    assert _read({"how": ["agent"], "told": ["coverage"], "ok": ["true"]}, {}).answers == \
        {"how": "agent", "told": ["coverage"], "ok": True}  # optional ones left empty are simply absent


def test_hidden_questions_are_not_read():
    read = _read({"how": ["agent"], "told": ["coverage"], "ok": ["true"], "regular_only": ["sneaked in"]}, {})
    assert read.ok and "regular_only" not in read.answers


def _all_yes(survey, context):
    answers = {}
    for page in survey.visible_pages(answers, context):
        for q in survey.visible_questions(page, answers, context):
            if q.correct_answer is not None:
                answers[q.name] = q.correct_answer
    return answers


def test_problems_completeness_and_outcome(survey, catalog):
    context = catalog.product("ENDOW_PAR10").context({})
    answers = _all_yes(survey, context)
    assert is_complete(survey, answers, context) and problems(survey, answers, context) == []
    assert outcome(survey, answers, context) == "success"
    answers["knows_exclusions"] = False
    assert problems(survey, answers, context) == [Problem("knows_exclusions", True, False)]
    assert outcome(survey, answers, context) == "problem"
    del answers["knows_payment_terms"]
    assert not is_complete(survey, answers, context) and missing(survey, answers, context) == ["knows_payment_terms"]
    # the same answers for a single-premium product: that question is not shown, so not missing
    single = catalog.product("TERM_SP20").context({})
    assert is_complete(survey, answers, single)
    # an answer to a question the product does not show is no problem
    assert problems(survey, {**_all_yes(survey, single), "knows_dividends_uncertain": False}, single) == []


def test_checkbox_problems_compare_as_sets():
    base = {"how": "agent", "ok": True}
    assert problems(MIXED, {**base, "told": ["exclusions", "coverage"]}, {}) == []
    assert problems(MIXED, {**base, "told": ["coverage"]}, {}) == [Problem("told", ["coverage", "exclusions"], ["coverage"])]


def test_resuming_goes_to_the_first_page_not_done(survey, catalog):
    context = catalog.product("CI_KANGNING").context({})
    assert next_page(survey, {}, context, []).name == "identity"
    answers = {"is_policyholder": True, "bought_product": True, "signed_personally": True}
    assert next_page(survey, answers, context, ["identity"]).name == "understanding"
    assert next_page(survey, answers, context, ["identity", "understanding"]).name == "understanding"  # still open
    answers = _all_yes(survey, context)
    assert next_page(survey, answers, context, ["identity", "understanding", "rights"]).name == "remarks"
    assert next_page(survey, answers, context, ["identity", "understanding", "rights", "remarks"]) is None
    assert progress(survey, answers, context, survey.page("rights")) == (3, 4)
    assert visible_answers(survey, {**answers, "knows_investment_risk": True}, context) == answers


# --- products and deadlines -------------------------------------------------------------------


def test_the_catalog(catalog):
    par = catalog.product("ENDOW_PAR10")
    assert (par.payment, par.payment_years, par.payment_frequency, par.type, par.cooling_off_days, par.survey) == \
        ("regular", 10, "年交", "participating", 20, "new_contract")
    term = catalog.product("TERM_SP20")
    assert (term.payment, term.payment_years, term.payment_frequency, term.cooling_off_days) == ("single", None, "趸交", 15)
    assert catalog.product("康宁终身重大疾病保险").code == "CI_KANGNING"  # by name too
    assert catalog.product("NOPE") is catalog.default and catalog.product(None) is catalog.default
    assert {p.type for p in catalog.products.values()} >= {"traditional", "participating", "universal", "unit_linked", "health"}


def test_the_callers_default_days_and_the_products_own_win():
    catalog = Catalog.load(SURVEYS / "products.yaml", default_cooling_off_days=21)
    assert catalog.product("TERM_SP20").cooling_off_days == 21 and catalog.default.cooling_off_days == 21
    assert catalog.product("ENDOW_PAR10").cooling_off_days == 20


def test_the_product_context(catalog):
    at = datetime(2026, 12, 17, 23, 59, 59, 999000, ZONE)
    context = catalog.product("CI_KANGNING").context({"holder_name": "欧阳娜娜", "payment_years": 30}, deadline_at=at)
    assert context == {"payment": "regular", "product_type": "health", "product_code": "CI_KANGNING",
                       "product_name": "康宁终身重大疾病保险", "payment_years": 30, "payment_frequency": "月交",
                       "cooling_off_days": 15, "holder_name_masked": "欧***", "deadline": "2026年12月17日"}
    unknown = catalog.product("老产品").context({"product": "老产品"})
    assert unknown["product_name"] == "老产品" and unknown["payment"] == "single"
    assert mask_name("张三") == "张*" and mask_name("") == "" and mask_name("王") == "*"


@pytest.mark.parametrize("received, days, last", [
    (date(2026, 3, 1), 15, date(2026, 3, 16)),
    (date(2026, 1, 20), 15, date(2026, 2, 4)),   # across a month end
    (date(2026, 2, 20), 15, date(2026, 3, 7)),   # February of a common year
    (date(2028, 2, 20), 15, date(2028, 3, 6)),   # and of a leap year
    (date(2026, 12, 25), 20, date(2027, 1, 14)),  # across a year end
    (date(2026, 1, 31), 1, date(2026, 2, 1)),
])
def test_deadlines(received, days, last):
    end = deadline(received, days, ZONE)
    assert end.date() == last and (end.hour, end.minute, end.second, end.microsecond) == (23, 59, 59, 999000)
    assert end.tzinfo is not None and end.utcoffset() == timedelta(hours=8)
    # 15:59:59.999 UTC is the end of the day in Shanghai
    assert end.astimezone(UTC) == datetime(last.year, last.month, last.day, 15, 59, 59, 999000, UTC)
    assert deadline(received, days, "Asia/Shanghai") == end
    assert deadline(received, days, "America/New_York").utcoffset() in (timedelta(hours=-5), timedelta(hours=-4))
    with pytest.raises(ValueError):
        deadline(received, 0, ZONE)


@pytest.mark.parametrize("text, path", [
    ("TERM: {name: x}\n", "default"),
    ("default: {payment: monthly}\n", "default.payment"),
    ("default: {}\nX: {payment: regular}\n", "X.payment_years"),
    ("default: {}\nX: {payment: regular, payment_years: 5, payment_frequency: 周交}\n", "X.payment_frequency"),
    ("default: {}\nX: {type: crypto}\n", "X.type"),
    ("default: {}\nX: {cooling_off_days: 0}\n", "X.cooling_off_days"),
    ("default: {}\nX: {colour: red}\n", "X.colour"),
    ("default: {}\nX: {survey: New}\n", "X.survey"),
    ("default: {}\n'bad code': {}\n", "bad code"),
    ("default: [\n", "$"),
])
def test_a_bad_products_file_names_the_file_and_the_path(tmp_path, text, path):
    (tmp_path / "products.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(SurveyError) as caught:
        Catalog.load(tmp_path / "products.yaml")
    assert str(caught.value).startswith(f"{tmp_path / 'products.yaml'}: {path}: "), str(caught.value)


# --- tokens -----------------------------------------------------------------------------------

KEY = b"k" * 32


def test_a_token_is_short_base62_and_carries_at_least_72_bits():
    token = tokens.make_token(KEY, tokens.new_salt())
    assert len(token) == tokens.TOKEN_LENGTH == 15 and set(token) <= set(string.ascii_letters + string.digits)
    assert 62 ** tokens.BODY_LENGTH >= 2 ** 72
    assert tokens.well_formed(token, KEY)
    bodies = {tokens.make_token(KEY, tokens.new_salt())[:tokens.BODY_LENGTH] for _ in range(2000)}
    assert len(bodies) == 2000


def test_the_same_salt_gives_the_same_token_and_another_key_another():
    salt = tokens.new_salt()
    assert tokens.make_token(KEY, salt) == tokens.make_token(KEY, salt)
    assert tokens.make_token(KEY, salt) != tokens.make_token(b"j" * 32, salt)
    assert not tokens.well_formed(tokens.make_token(b"j" * 32, salt), KEY)


def test_every_single_character_change_is_refused():
    for _ in range(20):
        token = tokens.make_token(KEY, tokens.new_salt())
        for i in range(len(token)):
            for c in tokens.ALPHABET:
                if c != token[i]:
                    assert not tokens.well_formed(token[:i] + c + token[i + 1:], KEY)


def test_garbage_is_refused():
    rng = random.Random(7)
    for bad in ("", "short", "x" * 16, "abc-defghijklmn", "abcdefghijklm中", "abcdefghijklmn ", None, 12345):
        assert not tokens.well_formed(bad, KEY)
    passed = sum(tokens.well_formed("".join(rng.choice(tokens.ALPHABET) for _ in range(15)), KEY) for _ in range(20000))
    assert passed < 20  # about 1 in 3844 by chance


def test_hashes_and_secrets():
    token = tokens.make_token(KEY, b"s" * 16)
    assert tokens.token_hash(token) == tokens.token_hash(token) and len(tokens.token_hash(token)) == 64
    assert tokens.token_hash(token) != tokens.token_hash(token[:-1] + "x")
    secret = tokens.new_secret()
    assert len(secret) >= 43 and secret != tokens.new_secret()
    assert tokens.secret_hash(secret) != secret and len(tokens.secret_hash(secret)) == 64


# --- one-time codes ---------------------------------------------------------------------------

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
POLICY = otp.OtpPolicy(length=6, ttl_s=300, per_minute=1, per_hour=5, max_wrong=5)


def test_codes_and_their_hashes():
    code = otp.new_code(random.SystemRandom())
    assert len(code) == 6 and code.isdigit()
    assert otp.code_hash("inv1", code) == otp.code_hash("inv1", code) != otp.code_hash("inv2", code)
    assert otp.code_matches("inv1", "１２３ ４５６", otp.code_hash("inv1", "123456"))
    assert not otp.code_matches("inv1", "123457", otp.code_hash("inv1", "123456"))
    assert otp.expires_at(POLICY, T0) == T0 + timedelta(minutes=5)


def test_one_code_a_minute_five_an_hour():
    assert otp.send_refusal(POLICY, [], T0) is None
    assert otp.send_refusal(POLICY, [T0], T0 + timedelta(seconds=30)) == "wait_minute"
    assert otp.retry_after(POLICY, [T0], T0 + timedelta(seconds=30)) == 30
    assert otp.send_refusal(POLICY, [T0], T0 + timedelta(seconds=61)) is None
    sent = [T0 + timedelta(minutes=m) for m in range(0, 50, 10)]  # five within the hour
    assert otp.send_refusal(POLICY, sent, T0 + timedelta(minutes=55)) == "hour_limit"
    assert otp.retry_after(POLICY, sent, T0 + timedelta(minutes=55)) == 5 * 60
    assert otp.send_refusal(POLICY, sent, T0 + timedelta(minutes=60, seconds=1)) is None


def test_five_wrong_codes_in_an_hour_lock():
    wrong = [T0 + timedelta(minutes=m) for m in (0, 1, 2, 3)]
    assert not otp.locked(POLICY, wrong, T0 + timedelta(minutes=5))
    wrong.append(T0 + timedelta(minutes=4))
    assert otp.locked(POLICY, wrong, T0 + timedelta(minutes=5))
    assert otp.locked_until(POLICY, wrong, T0 + timedelta(minutes=5)) == T0 + timedelta(hours=1)
    assert not otp.locked(POLICY, wrong, T0 + timedelta(hours=1, seconds=1))
    assert otp.locked_until(POLICY, wrong[:4], T0 + timedelta(minutes=5)) is None


# --- the audit chain --------------------------------------------------------------------------


def _events():
    return audit.chain([
        {"seq": 1, "kind": "invited", "at": T0, "data": {"channel": "sms"}},
        {"seq": 2, "kind": "opened", "at": T0 + timedelta(minutes=1), "data": {}},
        {"seq": 3, "kind": "identity_passed", "at": T0 + timedelta(minutes=2), "data": {}},
        {"seq": 4, "kind": "page_shown", "at": T0 + timedelta(minutes=3), "data": {"page": "identity", "sha256": "ab" * 32}},
        {"seq": 5, "kind": "answers", "at": T0 + timedelta(minutes=4), "data": {"page": "identity", "answers": {"is_policyholder": True, "remarks": "无"}}},
        {"seq": 6, "kind": "completed", "at": T0 + timedelta(minutes=5), "data": {"outcome": "success", "problems": [], "seconds": 65}},
    ])


def test_a_chain_holds_and_survives_a_round_trip_through_storage():
    events = _events()
    assert events[0]["prev_hash"] == audit.GENESIS and audit.verify(events) is None
    # as read back: naive UTC times (SQLite), ISO strings, another zone for the same instant
    stored = [{**e, "at": e["at"].replace(tzinfo=None)} for e in events]
    assert audit.verify(stored) is None
    assert audit.verify([{**e, "at": e["at"].astimezone(ZONE).isoformat()} for e in events]) is None


def test_verify_finds_an_edited_removed_or_reordered_event():
    events = _events()
    edited = [dict(e) for e in events]
    edited[4] = {**edited[4], "data": {"page": "identity", "answers": {"is_policyholder": False, "remarks": "无"}}}
    assert audit.verify(edited) == 4
    retimed = [dict(e) for e in events]
    retimed[2] = {**retimed[2], "at": T0 + timedelta(minutes=2, microseconds=1)}
    assert audit.verify(retimed) == 2
    assert audit.verify(events[:3] + events[4:]) == 3  # removed
    assert audit.verify([events[0], events[2], events[1], *events[3:]]) == 1  # reordered
    assert audit.verify(events[1:]) == 0  # the first one removed
    rehashed = [dict(e) for e in events]
    rehashed[5] = {**rehashed[5], "kind": "expired"}
    rehashed[5]["hash"] = audit.event_hash(rehashed[5]["prev_hash"], "expired", rehashed[5]["at"], rehashed[5]["data"])
    assert audit.verify(rehashed) is None  # rehashing the tail is possible without a key ...
    assert audit.verify([*events[:5], {**events[5], "seq": 7}]) == 5  # ... but a gap in seq is seen
    assert audit.verify([{k: v for k, v in events[0].items() if k != "hash"}]) == 0
    assert audit.verify([{**events[0], "kind": "hacked"}]) == 0


def test_event_hashes_are_canonical():
    a = audit.event_hash(audit.GENESIS, "answers", T0, {"b": 1, "a": "中文"})
    assert a == audit.event_hash(audit.GENESIS, "answers", T0.astimezone(ZONE), {"a": "中文", "b": 1})
    assert a != audit.event_hash(audit.GENESIS, "answers", T0, {"a": "中文", "b": 2})
    assert a != audit.event_hash("1" * 64, "answers", T0, {"b": 1, "a": "中文"})


# --- signals ----------------------------------------------------------------------------------


def test_signals():
    assert signals.too_fast(20, 15, 2.0) and not signals.too_fast(30, 15, 2.0) and not signals.too_fast(0, 0, 2.0)
    assert signals.shared(4, 3) and not signals.shared(3, 3)
    assert signals.flags(seconds=10, questions=12, min_seconds_per_question=2.0, device_policyholders=5,
                         address_policyholders=2, limit=3) == ["too_fast", "shared_device"]
    assert signals.address_key("2408:8207:1:2:3:4:5:6") == "2408:8207:1:2::/64"
    assert signals.address_key("::ffff:10.0.0.1") == "10.0.0.1" and signals.address_key("1.2.3.4") == "1.2.3.4"
    assert signals.address_key("not an ip") == "not an ip"


def test_a_policy_finds_its_product_by_code_or_name_and_bad_policy_values_fall_back(catalog):
    assert catalog.for_policy({"product_code": "ENDOW_PAR10", "product": "别的"}).code == "ENDOW_PAR10"
    assert catalog.for_policy({"product_code": "GONE", "product": "UL_WEALTH"}).code == "UL_WEALTH"
    assert catalog.for_policy({"product": "康宁终身重大疾病保险"}).code == "CI_KANGNING"
    assert catalog.for_policy({}) is catalog.default
    context = catalog.product("CI_KANGNING").context({"payment_years": "abc", "payment": "weekly", "payment_frequency": "周交"})
    assert (context["payment"], context["payment_years"], context["payment_frequency"]) == ("regular", 20, "月交")
    assert catalog.product("CI_KANGNING").context({"payment_years": "25"})["payment_years"] == 25


def test_every_products_survey_must_exist(catalog):
    catalog.check_surveys({"new_contract"})
    with pytest.raises(SurveyError, match=r"products.yaml: default.survey: 'new_contract' is not a survey"):
        catalog.check_surveys({"other"})


def test_answers_as_the_customer_saw_them(survey):
    from surveys.answers import display
    q = MIXED.question("how")
    assert display(q, "agent") == "业务员" and display(MIXED.question("told"), ["coverage", "fees"]) == "coverage、fees"
    assert display(survey.question("is_policyholder"), True) == "是，我是投保人本人"
    assert display(survey.question("is_policyholder"), False) == "不是" and display(q, None) == ""
    assert Problem("a", True, False).as_dict() == {"question": "a", "expected": True, "given": False}


def test_the_link_key_from_the_setting_or_a_file_made_once(tmp_path):
    assert tokens.load_key("00" * 16, tmp_path / "k") == bytes(16)
    assert tokens.load_key("a long passphrase of text", tmp_path / "k") == b"a long passphrase of text"
    with pytest.raises(ValueError):
        tokens.load_key("short", tmp_path / "k")
    made = tokens.load_key("", tmp_path / "data" / "survey_link.key")
    assert len(made) == 32 and tokens.load_key("", tmp_path / "data" / "survey_link.key") == made
    assert (tmp_path / "data" / "survey_link.key").stat().st_mode & 0o777 == 0o600


def test_a_chain_verifies_with_data_as_json_text():
    import json as _json
    events = _events()
    assert audit.verify([{**e, "data": _json.dumps(e["data"], ensure_ascii=False)} for e in events]) is None


def test_a_starlette_form_is_read_with_every_value_of_a_checkbox():
    from starlette.datastructures import FormData
    form = FormData([("how", "agent"), ("told", "coverage"), ("told", "exclusions"), ("ok", "true"), ("regular_only", "x")])
    read = _read(form)
    assert read.ok and read.answers["told"] == ["coverage", "exclusions"]
