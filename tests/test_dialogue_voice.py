"""Voice calls through Dialogue + the real ClaimReader: what the recognizer wrote (homophones,
dropped digits, misheard yes/no) and how the flow's grammars, rechecks and the policy records put
it right. Recognized speech is what comes with the recognizer's confidence (`on_text(text, conf)`)."""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

from speech.dialogue.actions import Prompt, Report, Transfer
from speech.dialogue.engine import Dialogue
from speech.dialogue.flow import load_flow
from speech.dialogue.records import PolicyRecord, RecordIndex
from speech.understanding.claims import ClaimReader
from speech.understanding.types import CallContext

ROOT = Path(__file__).resolve().parents[1]
FLOW = load_flow(ROOT / "config" / "flows" / "claim_report.yaml")
HEARD = 0.8  # any recognizer confidence: the text is recognized speech


@lru_cache(maxsize=1)
def understanding() -> ClaimReader:
    return ClaimReader.from_config(ROOT / "config")


def rec(policy: str, insured: str, id_number: str, phone: str, holder: str | None = None) -> PolicyRecord:
    return PolicyRecord(policy, "住院医疗", holder or insured, insured, id_number, phone, date(2025, 1, 1),
                        date(2027, 1, 1))


JIA = rec("P1", "贾超", "510107199906232643", "17309656343")
XIE = rec("P2", "谢金凤", "310115201102157978", "13900001111", holder="谢晓明")
ZHONG = rec("P3", "钟明", "310115194512284459", "13453840191")
RECORDS = RecordIndex([JIA, XIE, ZHONG])


class Call:
    def __init__(self, records: RecordIndex | None = RECORDS, caller: str = "16066907439") -> None:
        context = CallContext(datetime.fromisoformat("2026-03-19T10:16:00+08:00"), caller)
        self.d = Dialogue(FLOW, understanding(), context, records)
        self.out = self.d.start()

    def say(self, text: str, confidence: float | None = HEARD) -> list:
        assert not self.d.finished, text
        self.out = self.d.on_text(text, confidence)
        return self.out

    @property
    def prompt(self) -> Prompt:
        return [a for a in self.out if isinstance(a, Prompt)][-1]

    def past_spelling(self) -> None:
        """Yes to each name no record confirms, read back alone by its surname (您姓蔡，草头蔡，对吗？)."""
        for _ in range(2):
            if self.prompt.slot in ("reporter_name", "insured_name") and "姓" in self.prompt.text \
                    and self.prompt.text.endswith("对吗？"):
                self.say("对")


def test_the_first_prompt_listens_freely_later_name_prompts_with_the_name_grammar() -> None:
    call = Call()
    assert call.prompt.slot == "reporter_name" and call.prompt.hints is None
    call.say("我 要 报案")
    assert call.prompt.slot == "reporter_name" and "王" in call.prompt.hints


def test_a_homophone_name_takes_the_records_spelling_and_makes_the_caller_the_insured() -> None:
    call = Call()
    call.say("我 叫 假钞")  # free vocabulary: 贾超 heard as 假钞 (counterfeit money)
    call.say("身 份 证 号 是 五 一 零 一 零 七 一 九 九 九 零 六 二 三 二 六 四 三")
    assert call.d.slots["reporter_name"] == "贾超" and call.d.slots["relationship"] == "本人"
    assert call.prompt.slot == "incident_date"  # relationship and the insured's name come from the record


def test_the_reporter_sounding_like_the_holder_is_the_holder() -> None:
    call = Call()
    call.say("我 是 谢 晓 明")
    call.say("身 份 证 号 是 三 一 零 一 一 五 二 零 一 一 零 二 一 五 七 九 七 八")
    assert call.d.slots["reporter_name"] == "谢晓明" and call.d.slots["insured_name"] == "谢金凤"
    assert "relationship" not in call.d.slots  # the holder is not the insured: still asked


def test_an_id_with_repeated_digits_heard_once_is_found_at_once() -> None:
    call = Call()
    call.say("我 叫 钟 勇")
    call.say("身 份 证 号 是 三 一 零 一 五 一 九 四 五 一 二 八 四 四 五 九")  # two digits said twice, heard once
    assert call.d.slots["insured_id_number"] == ZHONG.insured_id_number and call.d.slots["insured_name"] == "钟明"
    assert call.prompt.slot == "relationship"


def test_an_id_with_dropped_digits_is_found_with_the_insureds_name_asked_next() -> None:
    call = Call()
    call.say("我 叫 钟 勇")
    call.say("身 份 证 号 是 三 一 零 一 一 五 一 四 五 一 二 二 八 四 四 五 九")  # a 九 lost: no repeat to restore
    assert call.prompt.slot == "insured_name"  # not the ID again at once: the name may find the record
    call.say("我 爸 叫 周 明")  # the surname misheard too
    assert call.d.slots["insured_id_number"] == ZHONG.insured_id_number
    assert call.d.slots["insured_name"] == "钟明" and call.d.slots["relationship"] == "父母"


def test_typed_invalid_id_is_asked_again_at_once() -> None:
    call = Call()
    call.say("我叫钟勇", None)
    call.say("身份证号是三一零一五一九四五一二八四四五九", None)
    assert call.prompt.slot == "insured_id_number" and "18位" in call.prompt.text


def finish_until_readback(call: Call) -> None:
    call.say("前天")
    call.say("出 了 意外 骨折")
    call.say("在 华西 医院")
    assert call.prompt.slot == "reporter_phone" and call.prompt.hints  # by voice asked, last
    call.say("就 用 这 个 号 码")
    call.past_spelling()


def test_a_name_heard_in_free_speech_is_asked_once_more_with_the_grammar() -> None:
    call = Call(records=None)
    call.say("我 是 中 会")  # 周慧, heard by the full vocabulary
    call.say("身 份 证 号 是 五 一 零 一 零 七 一 九 九 九 零 六 二 三 二 六 四 三")
    call.say("是 我 邻 居")
    call.say("我 邻 居 叫 蔡 金 凤")
    finish_until_readback(call)
    assert call.prompt.slot == "reporter_name" and "再说一遍" in call.prompt.text and call.prompt.hints
    call.say("我 是 周 慧")
    # no record confirms either name: each is read back alone by its surname first
    assert call.prompt.slot == "reporter_name" and call.prompt.text.endswith("您姓周，周总理的周，对吗？")
    call.say("对")
    assert call.prompt.slot == "insured_name" and "出险人姓蔡，草头蔡" in call.prompt.text
    call.say("对 的")
    assert call.prompt.slot == "confirm" and "报案人周慧" in call.prompt.text


def test_typed_names_are_not_asked_again() -> None:
    call = Call(records=None)
    for text in ("我是周慧", "身份证号是510107199906232643", "是我邻居", "我邻居叫蔡金凤", "前天", "出了意外，骨折"):
        call.say(text, None)
    call.say("在华西医院", None)
    assert call.prompt.slot == "confirm"


def readback_with_name(name_heard: str) -> Call:
    call = Call(records=None)
    call.say("我 要 报案")
    call.say(f"我 是 {name_heard}")  # with the name grammar
    call.say("身 份 证 号 是 五 一 零 一 零 七 一 九 九 九 零 六 二 三 二 六 四 三")
    call.say("是 我 邻 居")
    call.say("我 邻 居 叫 蔡 金 凤")
    finish_until_readback(call)
    assert call.prompt.slot == "confirm", call.prompt
    return call


def test_a_correction_in_free_speech_does_not_replace_a_name_heard_with_the_grammar() -> None:
    call = Call(records=None)
    call.say("我 要 报案")
    call.say("我 是 钟 红 梅")  # the name prompt's grammar
    call.say("身 份 证 号 是 五 一 零 一 零 七 一 九 九 九 零 六 二 三 二 六 四 三")
    call.say("是 我 邻 居")
    call.say("我 邻 居 叫 蔡 金 凤")
    finish_until_readback(call)
    assert "报案人钟红梅" in call.prompt.text
    call.say("不对 信 中 叫 诸侯 没")  # "不对，姓周，叫周红梅" in free speech
    assert call.d.slots["reporter_name"] == "钟红梅"
    assert call.prompt.slot == "reporter_name" and call.prompt.hints  # asked again, with the grammar
    call.say("我 是 周 红 梅")
    assert call.d.slots["reporter_name"] == "周红梅"
    assert call.prompt.slot == "confirm"


def test_a_name_rejected_twice_takes_what_the_caller_says_instead() -> None:
    call = at_the_read_back("我 叫 刘 伟", "朋 友")
    call.say("不对 我 是 刘磊")
    assert call.prompt.slot == "reporter_name"
    call.say("我 叫 刘 伟")  # the grammar hears the same again
    call.say("不对 我 是 刘磊")  # rejected twice: the free-speech name, which is like a name, wins
    assert call.d.slots["reporter_name"] == "刘磊"


def misheard_name_call(flow=None) -> Call:
    """A caller whose name (叶艳) is heard 越远 / 岳燕 however often they say it, at the read-back."""
    call = Call(records=None)
    if flow is not None:
        call.d = Dialogue(flow, understanding(), call.d._context, None)
        call.out = call.d.start()
    call.say("越 远")  # 叶艳 heard in free speech
    call.say("身 份 证 号 是 五 一 零 一 零 七 一 九 九 九 零 六 二 三 二 六 四 三")
    call.say("是 我 父 亲")
    call.say("我 父 亲 叫 蔡 金 凤")
    finish_until_readback(call)
    call.say("亲 岳 叫 岳 燕")  # the recheck, with the grammar
    call.past_spelling()
    call.asked = []
    for _ in range(8):
        if call.d.finished:
            break
        if call.prompt.slot == "confirm":
            call.say("不 是 越 远")
        else:
            call.asked.append((call.prompt.slot, call.prompt.text))
            call.say("亲 岳 叫 岳 燕" if call.prompt.slot == "reporter_name" else "就 用 这 个 号 码")
    return call


def test_a_misheard_correction_that_repeats_the_readback_is_asked_again_then_left_for_a_person_to_check() -> None:
    call = misheard_name_call()
    # once more with the grammar, then the narrower way (the surname spelled), then no third time:
    # the report is stored with the name marked unconfirmed, and the caller is told it will be checked
    assert [slot for slot, _ in call.asked] == ["reporter_name", "reporter_name"]
    assert "全名" in call.asked[0][1] and "哪个字" in call.asked[1][1]
    assert call.d.finished and not any(isinstance(a, Transfer) for a in call.out)
    report = next(a for a in call.out if isinstance(a, Report))
    assert report.status == "complete" and report.slots["reporter_name"] == "岳燕"
    assert report.details["reporter_name"].confirmed is False
    assert all(d.confirmed for slot, d in report.details.items() if slot != "reporter_name")
    assert call.prompt.text.startswith(FLOW.confirm.unresolved) and "报案已经登记" in call.prompt.text


def test_without_an_unresolved_wording_such_a_call_goes_to_an_agent_with_its_report() -> None:
    from dataclasses import replace

    call = misheard_name_call(replace(FLOW, confirm=replace(FLOW.confirm, unresolved="")))
    assert call.d.finished and isinstance(call.out[-1], Transfer)
    assert call.out[-1].reason in ("no_match", "too_many_turns")
    assert any(isinstance(a, Report) and a.status == "transferred" and a.slots["reporter_name"] == "岳燕"
               for a in call.out)


def father_injured_call() -> Call:
    """A voice call without policy records, up to the insured's name."""
    call = Call(records=None)
    call.say("我 要 报案")
    call.say("我 叫 段 玉 兰")
    call.say("身 份 证 号 是 五 一 零 一 零 七 一 九 九 九 零 六 二 三 二 六 四 三")
    call.say("是 我 父 亲")
    call.say("我 父 亲 叫 蔡 金 凤")
    return call


def test_by_voice_the_phone_is_asked_last_and_falls_back_to_the_callers_number() -> None:
    call = father_injured_call()
    call.say("前天")
    call.say("出 了 意外 骨折")
    call.say("在 华西 医院")
    assert call.prompt.slot == "reporter_phone"
    for _ in range(3):  # a digit dropped each time: 10 digits
        call.say("我 的 手 机 号 是 一 三 五 四 六 八 四 七 四 七")
    call.past_spelling()
    assert not call.d.finished and call.prompt.slot == "confirm"  # no transfer: the caller's number
    assert call.d.slots["reporter_phone"] == "16066907439" and "来电号码" in call.prompt.text


def test_typed_calls_still_assume_the_callers_number() -> None:
    call = Call(records=None)
    for text in ("我叫段玉兰", "身份证号是510107199906232643", "是我父亲", "我父亲叫蔡金凤", "前天", "出了意外，骨折"):
        call.say(text, None)
    call.say("在华西医院", None)
    assert call.prompt.slot == "confirm" and "来电号码" in call.prompt.text


def test_a_misheard_phone_correction_sets_nothing_else() -> None:
    call = father_injured_call()
    finish_until_readback(call)
    call.say("错 出门 我 的 手机 是 一三五 四六 巴塞尔 妻子 去")  # 妻子 (wife) was 七四七
    assert call.d.slots["relationship"] == "父母"
    assert call.prompt.slot == "reporter_phone" and call.prompt.hints
    call.say("我 的 手 机 号 是 一 三 五 四 六 八 四 二 七 四 七")
    assert call.d.slots["reporter_phone"] == "13546842747" and call.prompt.slot == "confirm"


def test_a_misheard_yes_completes_the_call() -> None:
    call = readback_with_name("周 慧")
    call.say("对等")  # 对的
    assert call.d.finished and any(isinstance(a, Report) and a.status == "complete" for a in call.out)


def test_a_rejected_name_heard_the_same_again_takes_the_recognizers_next_reading() -> None:
    call = Call(records=None)
    call.say("越 远")  # 叶艳 heard in free speech
    call.say("身 份 证 号 是 五 一 零 一 零 七 一 九 九 九 零 六 二 三 二 六 四 三")
    call.say("是 我 父 亲")
    call.say("我 父 亲 叫 蔡 金 凤")
    finish_until_readback(call)
    assert call.prompt.slot == "reporter_name" and call.prompt.alternatives == 0  # a recheck: nothing rejected yet
    call.say("亲 岳 叫 岳 燕")
    call.past_spelling()
    assert call.prompt.slot == "confirm" and call.prompt.slots["reporter_name"] == "岳燕"
    call.say("名 字 不 对")
    assert call.prompt.slot == "reporter_name" and call.prompt.alternatives > 0  # asked again, n-best wanted
    # the best reading is the rejected 岳燕 again; the next one that gives another name is taken
    call.out = call.d.on_text("亲 岳 叫 岳 燕", HEARD, ["亲 岳 叫 岳 燕", "亲 叶 叫 岳 燕", "亲 叶 叫 叶 艳"])
    assert call.prompt.slot == "confirm" and call.prompt.slots["reporter_name"] == "叶艳"


SET_ASIDE_ANSWERS = {
    "insured_id_number": "身 份 证 号 是 五 一 零 一 零 七 一 九 九 九 零 六 二 三 二 六 四 三",
    "relationship": "是 我 父 亲", "insured_name": "我 父 亲 叫 蔡 金 凤", "incident_date": "前天",
    "incident_type": "出 了 意外 骨折", "hospital": "在 华西 医院", "reporter_phone": "就 用 这 个 号 码",
}


def name_set_aside_until_asked_again() -> Call:
    call = Call(records=None)
    for _ in range(3):  # three answers no name can be read from
        assert call.prompt.slot == "reporter_name" and not call.d.finished
        call.say("这 个 这 个")
    # not an agent at the second question with nothing collected: the other questions first
    assert not call.d.finished and call.prompt.slot == "insured_id_number"
    for _ in range(10):
        call.past_spelling()
        if call.prompt.slot == "reporter_name":
            break
        call.say(SET_ASIDE_ANSWERS[call.prompt.slot])
    assert call.prompt.slot == "reporter_name" and "全名" in call.prompt.text  # once more, at the end
    return call


def test_a_name_not_understood_is_set_aside_and_asked_again_at_the_end() -> None:
    call = name_set_aside_until_asked_again()
    call.say("这 个 这 个")
    assert call.d.finished and isinstance(call.out[-1], Transfer)
    report = next(a for a in call.out if isinstance(a, Report))
    assert report.status == "transferred" and report.slots["hospital"] and report.slots["insured_name"] == "蔡金凤"


def test_a_name_set_aside_is_taken_when_it_is_understood_at_the_end() -> None:
    call = name_set_aside_until_asked_again()
    call.say("我 姓 草 叫 草 明 贵")  # 曹 heard with another tone
    for _ in range(4):
        call.past_spelling()
        if call.prompt.slot == "confirm":
            break
        call.say(SET_ASIDE_ANSWERS[call.prompt.slot])
    assert call.prompt.slot == "confirm" and call.prompt.slots["reporter_name"] == "曹明贵"


NIE = rec("P4", "聂荣", "370102199911069344", "13512345678", holder="聂明磊")


def test_a_caller_heard_with_the_holders_given_name_is_the_holder() -> None:
    call = Call(records=RecordIndex([NIE]))
    call.say("我 要 报案")
    call.say("亲 岳 叫 月 明 伟")  # "姓聂，叫聂明磊": the surname garbled, the given name alike
    call.say("身 份 证 号 是 三 七 零 一 零 二 一 九 九 九 一 一 零 六 九 三 四 四")
    assert call.d.slots["reporter_name"] == "聂明磊" and call.d.slots["insured_name"] == "聂荣"
    assert "reporter_phone" not in call.d.slots  # the record's phone is the insured's: asked, by voice
    assert call.prompt.slot == "relationship"


def test_a_name_unlike_the_holders_stays_as_heard() -> None:
    call = Call(records=RecordIndex([NIE]))
    call.say("我 要 报案")
    call.say("我 是 王 建 国")
    call.say("身 份 证 号 是 三 七 零 一 零 二 一 九 九 九 一 一 零 六 九 三 四 四")
    assert call.d.slots["reporter_name"] == "王建国" and "reporter_phone" not in call.d.slots


def test_a_spoken_correction_that_sounds_like_the_records_name_takes_its_spelling() -> None:
    wu = rec("P5", "令狐海", "510107196904026447", "19410387336", holder="邬泽")
    call = Call(records=RecordIndex([wu]))
    call.say("我 要 报案")
    call.say("姑 波 泽")  # "邬，邬泽"
    call.say("身 份 证 号 是 五 一 零 一 零 七 一 九 六 九 零 四 零 二 六 四 四 七")
    call.say("我 爱 人")
    finish_until_readback(call)
    while call.prompt.slot != "confirm":
        call.say("对")
    assert call.d.slots["reporter_name"] != "邬泽"
    call.say("不对 名 字 不 对")
    assert call.prompt.slot == "reporter_name"
    call.say("我 是 巫 泽")  # the sound of 邬泽: the record's spelling
    assert call.d.slots["reporter_name"] == "邬泽"


def at_the_read_back(name: str = "我 是 钟 红 梅", relation: str = "邻 居") -> Call:
    """A voice call without policy records, for the caller's `relation` 蔡金凤, up to the read-back."""
    call = Call(records=None)
    call.say("我 要 报案")
    call.say(name)
    call.say("身 份 证 号 是 五 一 零 一 零 七 一 九 九 九 零 六 二 三 二 六 四 三")
    call.say(f"是 我 {relation}")
    call.say(f"我 {relation} 叫 蔡 金 凤")
    finish_until_readback(call)
    assert call.prompt.slot == "confirm"
    return call


def test_which_answered_with_words_we_cannot_place_asks_again_what_we_are_least_sure_of() -> None:
    call = at_the_read_back()
    call.say("有 个 地方 不对")
    assert call.prompt.text.startswith("请问哪一项不对")
    call.say("幸运 叫 名 哪")  # a name in free speech: no item of the read-back
    assert call.prompt.slot == "reporter_name" and call.prompt.hints  # not the whole read-back again
    assert not call.prompt.text.startswith("请问哪一项不对")


def test_expects_more_only_after_a_bare_no_at_the_read_back() -> None:
    assert not Call(records=None).d.expects_more("不 对")  # collecting: "不对" is an answer
    call = at_the_read_back()
    assert call.d.expects_more("不 对") and call.d.expects_more("有 个 地方 不对") and call.d.expects_more("错 了")
    assert not call.d.expects_more("对")
    assert not call.d.expects_more("电 话 不 对")  # says which: answered at once
    assert not call.d.expects_more("不对 我 叫 周 红 梅")
    assert not call.d.expects_more("转 人工")


def test_a_greeting_is_no_name() -> None:
    call = Call(records=None)
    call.say("你好 我 要 报案")  # 你 sounds like the surname 倪
    assert "reporter_name" not in call.d.slots and call.prompt.slot == "reporter_name"


def test_an_id_with_a_repeated_digit_heard_once_is_the_records_whatever_the_name() -> None:
    xu = rec("P6", "许伟芳", "510107199408115583", "13476525555")
    call = Call(records=RecordIndex([xu, NIE]))
    call.say("我 要 报案")
    call.say("我 是 齐 伟 峰")  # the name misheard too: it cannot confirm the record
    call.say("身 份 证 号 是 五 幺 洞 幺 洞 七 一 九 九 四 洞 八 幺 幺 五 八 三")  # 五五 heard as 五
    assert call.d.slots["insured_id_number"] == "510107199408115583"
    assert call.d.record is not None and call.d.record.policy_number == "P6"
    assert call.prompt.slot != "insured_id_number"


def test_a_no_that_sounds_like_the_records_name_is_not_about_it() -> None:
    call = Call(records=RecordIndex([NIE]))
    call.say("我 要 报案")
    call.say("我 是 钟 红 梅")
    call.say("身 份 证 号 是 三 七 零 一 零 二 一 九 九 九 一 一 零 六 九 三 四 四")
    call.say("我 儿 子")
    finish_until_readback(call)
    while call.prompt.slot != "confirm":
        call.say("对")
    assert call.d.slots["insured_name"] == "聂荣"
    call.say("错 了 那个 念 荣 据")  # sounds like the insured's 聂荣, which came from the record, not from us hearing it
    assert call.prompt.slot != "insured_name"
    assert call.d.slots["insured_name"] == "聂荣"


def test_a_fallen_back_phone_said_wrong_again_in_digits_we_cannot_get_ends_unconfirmed_not_at_an_agent() -> None:
    call = father_injured_call()
    call.say("前天")
    call.say("出 了 意外 骨折")
    call.say("在 华西 医院")
    for _ in range(3):  # a digit dropped each time: 10 digits
        call.say("我 的 手 机 号 是 一 三 五 四 六 八 四 七 四 七")
    call.past_spelling()
    assert call.prompt.slot == "confirm" and call.d.slots["reporter_phone"] == "16066907439"
    out = call.say("错 了 我 的 手机 号 是 一 三 五 四 六 八 四 七 四")  # too few digits again, in free speech
    report = out[0]
    assert isinstance(report, Report) and report.status == "complete"
    assert report.details["reporter_phone"].confirmed is False  # for the claims desk to check
    assert "核实" in call.prompt.text and not any(isinstance(a, Transfer) for a in out)


def test_a_no_we_cannot_place_to_the_end_of_the_turns_leaves_what_we_doubted_unconfirmed() -> None:
    call = father_injured_call()
    call.say("前天")
    call.say("出 了 意外 骨折")
    call.say("在 华西 医院")
    for _ in range(3):  # a digit dropped each time: the phone falls back to the calling number
        call.say("我 的 手 机 号 是 一 三 五 四 六 八 四 七 四 七")
    call.past_spelling()
    assert call.prompt.slot == "confirm"
    call.say("不对 这 个 那 个 不 行")  # a no, and words that are no item of the read-back
    assert call.prompt.slot == "reporter_phone"  # the assumed number is what we are least sure of
    out = call.say("一 三 五 四 六 八 四 七 四 七")  # still ten digits: the turns are spent
    # the caller never said which item is wrong, but every slot has a value: the report is
    # stored with the item we doubted unconfirmed, for the claims desk, not sent to an agent
    report = out[0]
    assert isinstance(report, Report) and report.status == "complete"
    assert not report.details["reporter_phone"].confirmed
    assert all(d.confirmed for slot, d in report.details.items() if slot != "reporter_phone")
    assert "核实" in call.prompt.text and not any(isinstance(a, Transfer) for a in out)
