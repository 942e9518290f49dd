"""The per-call recognizer: word times on the call's clock, vocabulary switches, warm reuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from calls import AUDIO, load_pcm, manifest
from speech.recognizer import Recognizer, RecognizerPool, grammar_phrases, load_model

pytestmark = pytest.mark.slow

HELLO = AUDIO / "phone" / "fireredasr2s_hello_zh.wav"  # 你好世界


@pytest.fixture(scope="module")
def model(model_cache: Path):
    return load_model(model_cache / "vosk-model-small-cn-0.22")


def recognize(rec: Recognizer, pcm: bytes, at: float) -> str:
    rec.accept(pcm, at)
    return rec.finish()


def test_word_times_are_call_times_across_skipped_silence(model):
    pcm, rate = load_pcm(HELLO)
    rec = Recognizer(model, rate)
    first = recognize(rec, pcm, 0.0)
    later = recognize(rec, pcm, 30.0)  # 27.7 s of silence the gate never passed
    assert first.text.replace(" ", "").startswith("你好")
    assert later.start == pytest.approx(first.start + 30.0, abs=0.05)
    assert later.words[-1].end == pytest.approx(first.words[-1].end + 30.0, abs=0.05)


def test_pooled_recognizers_are_reused_warm_with_correct_times(model):
    pcm, rate = load_pcm(HELLO)
    pool = RecognizerPool(model, max_idle=2)
    first_call = Recognizer(model, rate, pool=pool)
    first = recognize(first_call, pcm, 0.0)
    first_call.close()
    assert pool.idle == 1
    second_call = Recognizer(model, rate, pool=pool)
    assert pool.idle == 0  # the warm one was taken
    second = recognize(second_call, pcm, 0.0)
    assert second.text == first.text
    assert second.start == pytest.approx(first.start, abs=0.05)  # its Vosk clock ran on; ours did not


def test_a_grammar_restricts_the_answer_and_taints_the_recognizer(model):
    files = {row["text"]: row["file"] for row in manifest(AUDIO / "callers-dev")}
    spoken = "身份证号是四四零幺零六幺九六零零九幺零零七六五"
    pcm, rate = load_pcm(AUDIO / "callers-dev" / files[spoken])
    pool = RecognizerPool(model)
    rec = Recognizer(model, rate, pool=pool)
    free = recognize(rec, pcm, 0.0).text
    rec.set_phrases(grammar_phrases(["零", "一", "幺", "二", "三", "四", "五", "六", "七", "八", "九", "身份证号", "是"]))
    restricted = recognize(rec, pcm, 10.0).text
    digits = "".join(ch for ch in restricted if ch in "零一幺二三四五六七八九")
    assert len(digits) == 18  # free recognition lost digits to words ("迅速" for 四四)
    assert len("".join(ch for ch in free if ch in "零一幺二三四五六七八九")) < 18
    rec.close()
    assert pool.idle == 0  # a recognizer that had a grammar is not handed to another call


def test_vocabulary_switch_waits_for_the_utterance_to_end(model):
    pcm, rate = load_pcm(HELLO)
    rec = Recognizer(model, rate)
    rec.accept(pcm[: len(pcm) // 2], 0.0)
    rec.set_phrases(["一", "二"])
    assert rec.phrases is None  # not mid-utterance
    rec.accept(pcm[len(pcm) // 2 :], len(pcm) // 4 / rate)
    result = rec.finish()
    assert result.text.replace(" ", "").startswith("你好")
    assert rec.phrases == ("一", "二")


def test_warm_up_pools_a_recognizer_that_then_decodes_a_call_like_a_fresh_one(model):
    import threading

    pcm, rate = load_pcm(HELLO)
    speech, _ = load_pcm(AUDIO / "phone" / sorted(p.name for p in (AUDIO / "phone").glob("*.wav"))[0])
    pool = RecognizerPool(model, max_idle=1)
    assert pool.warm_up(rate, speech * 2)
    assert pool.idle == 1
    assert not pool.warm_up(rate, speech)  # full: nothing more is kept
    stopped = threading.Event()
    stopped.set()
    assert not RecognizerPool(model).warm_up(rate, speech, stopped)

    fresh = recognize(Recognizer(model, rate), pcm, 5.0)
    call = Recognizer(model, rate, pool=pool)
    assert pool.idle == 0
    warm = recognize(call, pcm, 5.0)
    assert warm.text == fresh.text
    assert warm.start == pytest.approx(fresh.start, abs=0.05)  # warm-up audio is not on the call's clock
    assert warm.words[-1].end == pytest.approx(fresh.words[-1].end, abs=0.05)

