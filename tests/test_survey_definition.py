"""Survey definitions: the bundled 新契约回访 loads, anything outside the SurveyJS subset is refused
naming the file and the JSON path, every survey has a version and a hash, and the questions shown
follow the product."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from surveys.definition import (CONTEXT_VARIABLES, SurveyError, load_survey, load_surveys, parse_survey,
                                render_text)
from surveys.products import Catalog

ROOT = Path(__file__).resolve().parent.parent
SURVEYS = ROOT / "config" / "surveys"
RAW = json.loads((SURVEYS / "new_contract.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def survey():
    return load_survey(SURVEYS / "new_contract.json")


@pytest.fixture(scope="module")
def catalog():
    return Catalog.load(SURVEYS / "products.yaml")


def _shown(survey, context, answers=None):
    answers = answers or {}
    return [q.name for page in survey.visible_pages(answers, context)
            for q in survey.visible_questions(page, answers, context)]


def test_the_bundled_survey_loads_with_every_item_of_the_issue(survey):
    assert survey.name == "new_contract" and survey.title == "新契约回访" and survey.version == "2026-12-01"
    assert [p.name for p in survey.pages] == ["identity", "understanding", "rights", "remarks"]
    names = [q.name for q in survey.questions()]
    for item in ("is_policyholder", "bought_product", "signed_personally", "read_documents", "knows_coverage",
                 "knows_exclusions", "knows_term", "knows_surrender_loss", "knows_cooling_off",
                 "knows_cooling_off_rights", "knows_payment_terms", "knows_benefits_uncertain", "remarks"):
        assert item in names
    assert "welcome" not in names  # html is not answerable
    checks = [q for q in survey.questions() if q.correct_answer is not None]
    assert all(q.is_required and q.type == "boolean" and q.correct_answer is True for q in checks)
    assert survey.question("remarks").type == "comment" and not survey.question("remarks").is_required
    assert "产品说明书" in survey.question("read_documents").title and "投保须知" in survey.question("read_documents").title
    assert "责任免除" in survey.question("knows_exclusions").title
    assert "{payment_years}" in survey.question("knows_payment_terms").title
    assert "{cooling_off_days}" in survey.question("knows_cooling_off").title
    assert survey.completed_html and survey.path == SURVEYS / "new_contract.json"
    with pytest.raises(KeyError):
        survey.question("nothing")


def test_load_surveys_finds_every_file_by_name():
    assert set(load_surveys(SURVEYS)) == {"new_contract"}


def test_version_and_hash(survey, tmp_path):
    assert len(survey.hash) == 64 and int(survey.hash, 16) >= 0
    # the hash is of the content, not the formatting or key order
    again = tmp_path / "new_contract.json"
    again.write_text(json.dumps(dict(reversed(list(RAW.items()))), ensure_ascii=True, indent=1), encoding="utf-8")
    assert load_survey(again).hash == survey.hash
    changed = copy.deepcopy(RAW)
    changed["pages"][0]["elements"][1]["title"] += "？"
    assert parse_survey(changed).hash != survey.hash
    assert parse_survey({**RAW, "version": 3}).version == "3"


@pytest.mark.parametrize("code, added", [
    ("TERM_SP20", []),
    ("ENDOW_PAR10", ["knows_payment_terms", "knows_benefits_uncertain", "knows_dividends_uncertain"]),
    ("UL_WEALTH", ["knows_payment_terms", "knows_benefits_uncertain", "knows_universal_rate"]),
    ("ILP_STEADY", ["knows_benefits_uncertain", "knows_investment_risk"]),
    ("CI_KANGNING", ["knows_payment_terms"]),
    ("NOT_IN_THE_CATALOG", []),
])
def test_the_questions_shown_follow_the_product(survey, catalog, code, added):
    shown = _shown(survey, catalog.product(code).context({}))
    base = ["is_policyholder", "bought_product", "signed_personally", "read_documents", "knows_coverage",
            "knows_exclusions", "knows_term"]
    tail = ["knows_surrender_loss", "knows_cooling_off", "knows_cooling_off_rights", "service_rating", "remarks"]
    assert shown == base + added + tail


def test_titles_are_rendered_from_the_product_context(survey, catalog):
    context = catalog.product("ENDOW_PAR10").context({"holder_name": "张三"})
    title = render_text(survey.question("knows_payment_terms").title, context)
    assert "交费期间为10年" in title and "交费方式为年交" in title and "{" not in title
    assert "犹豫期为20天" in render_text(survey.question("knows_cooling_off").title, context)
    assert render_text("{product_name}，{nothing}", context) == "鑫享年年两全保险（分红型），{nothing}"
    assert render_text("{payment_years}年", catalog.product("TERM_SP20").context({})) == "年"


def _refused(change, source="config/surveys/x.json"):
    raw = copy.deepcopy(RAW)
    change(raw)
    with pytest.raises(SurveyError) as caught:
        parse_survey(raw, source)
    return str(caught.value)


def _element(raw, page, index):
    return raw["pages"][page]["elements"][index]


@pytest.mark.parametrize("change, path, words", [
    (lambda r: _element(r, 1, 2).update(type="matrix"), "pages[1].elements[2].type", "'matrix' is not supported (use radiogroup"),
    (lambda r: _element(r, 1, 2).pop("type"), "pages[1].elements[2].type", "missing"),
    (lambda r: _element(r, 0, 1).update(colCount=2), "pages[0].elements[1].colCount", "not supported in a boolean element"),
    (lambda r: r.update(showProgressBar="top"), "showProgressBar", "not supported in a survey (use name, version"),
    (lambda r: r["pages"][2].update(navigationTitle="x"), "pages[2].navigationTitle", "not supported in a page"),
    (lambda r: r.pop("version"), "version", "missing"),
    (lambda r: r.update(name="New Contract"), "name", "is not a survey name"),
    (lambda r: r.update(pages=[]), "pages", "non-empty list"),
    (lambda r: r["pages"][1].update(elements=[]), "pages[1].elements", "non-empty list"),
    (lambda r: _element(r, 1, 1).update(name="is_policyholder"), "pages[1].elements[1].name", "already the name of pages[0].elements[1]"),
    (lambda r: _element(r, 1, 1).update(name="payment"), "pages[1].elements[1].name", "reserved"),
    (lambda r: _element(r, 1, 1).update(name="csrf"), "pages[1].elements[1].name", "reserved"),
    (lambda r: _element(r, 1, 1).update(name="2nd"), "pages[1].elements[1].name", "is not a name"),
    (lambda r: _element(r, 1, 1).update(visibleIf="{payment} = "), "pages[1].elements[1].visibleIf", "does not parse: expected a value but found the end at position 12"),
    (lambda r: _element(r, 1, 1).update(visibleIf="{colour} = 'red'"), "pages[1].elements[1].visibleIf", "{colour} is neither a question of an earlier page nor a context variable"),
    (lambda r: _element(r, 1, 1).update(visibleIf="{knows_term} = true"), "pages[1].elements[1].visibleIf", "{knows_term} is neither"),
    (lambda r: r["pages"][1].update(visibleIf="{remarks} notempty"), "pages[1].visibleIf", "{remarks} is neither"),
    (lambda r: _element(r, 1, 1).update(correctAnswer="yes"), "pages[1].elements[1].correctAnswer", "expected true or false"),
    (lambda r: _element(r, 1, 1).update(isRequired=False), "pages[1].elements[1].correctAnswer", "must be isRequired"),
    (lambda r: _element(r, 1, 1).update(isRequired="yes"), "pages[1].elements[1].isRequired", "expected true or false"),
    (lambda r: _element(r, 1, 1).update(title={"default": "a", "zh-cn": "b"}), "pages[1].elements[1].title", "localized texts are not supported"),
    (lambda r: _element(r, 1, 1).update(title="{policy_number}"), "pages[1].elements[1].title", "{policy_number} is not a context variable"),
    (lambda r: _element(r, 3, 0).update(rateMin=5, rateMax=5), "pages[3].elements[0].rateMax", "from rateMin to a larger rateMax"),
    (lambda r: _element(r, 3, 0).update(rateMax=20), "pages[3].elements[0].rateMax", "at most 10 apart"),
    (lambda r: _element(r, 3, 0).update(rateMax="5"), "pages[3].elements[0].rateMax", "expected a whole number"),
    (lambda r: _element(r, 3, 0).update(isRequired=True, correctAnswer=9), "pages[3].elements[0].correctAnswer", "not a rating from 1 to 5"),
    (lambda r: _element(r, 3, 0).update(rateValues=[1, 2, 3]), "pages[3].elements[0].rateValues", "not supported in a rating element"),
    (lambda r: _element(r, 3, 1).update(maxLength=0), "pages[3].elements[1].maxLength", "is not from 1 to 2000"),
    (lambda r: _element(r, 3, 1).update(correctAnswer="x"), "pages[3].elements[1].correctAnswer", "not supported in a comment element"),
    (lambda r: _element(r, 0, 0).update(html=""), "pages[0].elements[0].html", "missing"),
    (lambda r: _element(r, 0, 1).update(voice="请回答"), "pages[0].elements[1].voice", "expected an object"),
    (lambda r: _element(r, 0, 1).update(labelFalse="是，我是投保人本人"), "pages[0].elements[1].labelTrue", "two different"),
])
def test_a_bad_definition_names_the_file_and_the_json_path(change, path, words):
    message = _refused(change)
    assert message.startswith(f"config/surveys/x.json: {path}: "), message
    assert words in message, message


def _radio(**extra):
    return {"type": "radiogroup", "name": "channel_used", "title": "您通过什么渠道投保？", "isRequired": True,
            "choices": ["柜面", {"value": "agent", "text": "业务员"}, {"value": 3, "text": "网络"}], **extra}


@pytest.mark.parametrize("element, path, words", [
    (_radio(correctAnswer="电话"), "pages[0].elements[0].correctAnswer", "'电话' is not among the choices (柜面, agent, 3)"),
    (_radio(choices=[]), "pages[0].elements[0].choices", "non-empty list"),
    (_radio(choices=["a", "a"]), "pages[0].elements[0].choices[1]", "appears twice"),
    (_radio(choices=[{"value": "a", "label": "A"}]), "pages[0].elements[0].choices[0].label", "use value, text"),
    (_radio(choices=[True]), "pages[0].elements[0].choices[0]", "non-empty text or a whole number"),
    ({**_radio(type="checkbox"), "correctAnswer": ["agent", "传真"]}, "pages[0].elements[0].correctAnswer", "'传真' is not among"),
    ({**_radio(type="checkbox"), "correctAnswer": "agent"}, "pages[0].elements[0].correctAnswer", "non-empty list"),
])
def test_choice_rules(element, path, words):
    raw = {"version": "1", "pages": [{"elements": [element]}]}
    with pytest.raises(SurveyError) as caught:
        parse_survey(raw, "x.json", default_name="x")
    assert str(caught.value).startswith(f"x.json: {path}: ") and words in str(caught.value), str(caught.value)


def test_choices_as_strings_or_objects_and_numbers_as_text():
    survey = parse_survey({"version": "1", "pages": [{"elements": [_radio(correctAnswer=3)]}]}, default_name="x")
    q = survey.question("channel_used")
    assert [(c.value, c.text) for c in q.choices] == [("柜面", "柜面"), ("agent", "业务员"), ("3", "网络")]
    assert q.correct_answer == "3" and survey.pages[0].name == "page1"


def test_file_errors_name_the_file(tmp_path):
    (tmp_path / "broken.json").write_text('{"version": "1", "pages": [', encoding="utf-8")
    with pytest.raises(SurveyError, match=r"broken.json: \$: not valid JSON \(line 1"):
        load_survey(tmp_path / "broken.json")
    (tmp_path / "twice.json").write_text('{"version": "1", "version": "2", "pages": []}', encoding="utf-8")
    with pytest.raises(SurveyError, match=r"twice.json: \$: the key 'version' appears twice"):
        load_survey(tmp_path / "twice.json")
    with pytest.raises(SurveyError, match="missing.json"):
        load_survey(tmp_path / "missing.json")


def test_the_same_survey_name_twice_is_refused(tmp_path):
    for stem in ("a", "b"):
        (tmp_path / f"{stem}.json").write_text(json.dumps(RAW, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(SurveyError, match="b.json: name: 'new_contract' is also defined in"):
        load_surveys(tmp_path)


def test_the_name_defaults_to_the_file_stem(tmp_path):
    raw = {k: v for k, v in RAW.items() if k != "name"}
    (tmp_path / "renewal_check.json").write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    assert load_survey(tmp_path / "renewal_check.json").name == "renewal_check"


def test_context_variables_are_listed_once_and_are_what_products_give(catalog):
    assert set(catalog.product("ENDOW_PAR10").context({})) == set(CONTEXT_VARIABLES)


def test_a_page_is_hidden_by_its_visible_if_or_when_nothing_on_it_is_shown():
    raw = {"version": "1", "pages": [
        {"name": "a", "elements": [{"type": "boolean", "name": "agent", "title": "有业务员吗？", "isRequired": True}]},
        {"name": "b", "visibleIf": "{agent} = true", "elements": [{"type": "text", "name": "agent_name"}]},
        {"name": "c", "elements": [{"type": "text", "name": "x", "visibleIf": "{payment} = 'regular'"}]},
    ]}
    survey = parse_survey(raw, default_name="t")
    assert [p.name for p in survey.visible_pages({}, {"payment": "single"})] == ["a"]
    assert [p.name for p in survey.visible_pages({"agent": True}, {"payment": "regular"})] == ["a", "b", "c"]


def test_html_gets_the_values_escaped_and_the_markup_kept(survey):
    from surveys.definition import render_html
    html = survey.pages[0].elements[0].html
    out = render_html(html, {"product_name": "<script>alert(1)</script>"})
    assert out.startswith("<p>") and "&lt;script&gt;" in out and "<script>" not in out


def test_questions_are_hashable(survey):
    assert len(set(survey.questions())) == len(survey.questions())


def test_a_missing_directory_is_an_error(tmp_path):
    with pytest.raises(SurveyError, match="not a directory"):
        load_surveys(tmp_path / "nowhere")


@pytest.mark.parametrize("code", ["TERM_SP20", "ENDOW_PAR10", "UL_WEALTH", "ILP_STEADY", "CI_KANGNING", "NEW"])
def test_every_text_shown_renders_for_every_product(survey, catalog, code):
    from surveys.definition import render_html
    context = catalog.product(code).context({"holder_name": "李四", "product": "新产品"})
    for page in survey.visible_pages({}, context):
        assert "{" not in render_text(page.title, context)
        for element in survey.visible_elements(page, {}, context):
            for text in (element.title, element.description, *(c.text for c in element.choices)):
                assert "{" not in render_text(text, context), (code, element.name)
            assert "{" not in render_html(element.html, context)
            for spoken in element.voice.values():
                assert "{" not in render_text(str(spoken), context)


def test_html_elements_show_but_are_not_questions(survey, catalog):
    context = catalog.product("TERM_SP20").context({})
    first = survey.pages[0]
    assert [e.name for e in survey.visible_elements(first, {}, context)][0] == "welcome"
    assert "welcome" not in [q.name for q in survey.visible_questions(first, {}, context)]
    assert [q.name for q in first.questions] == ["is_policyholder", "bought_product", "signed_personally"]
