"""The per-call recognizer: word times on the call's clock, vocabulary switches, warm reuse, n-best."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from audio_helpers import seed_dither
from calls import AUDIO, load_pcm, manifest
from speech.recognizer import Recognizer, RecognizerPool, grammar_phrases, load_model
from speech.results import Transcript

pytestmark = pytest.mark.slow

HELLO = AUDIO / "phone" / "fireredasr2s_hello_zh.wav"  # 你好世界
ID_SPOKEN = "身份证号是四四零幺零六幺九六零零九幺零零七六五"  # a callers-dev clip
ID_HINTS = ["零", "一", "幺", "二", "三", "四", "五", "六", "七", "八", "九", "身份证号", "是"]
DIGITS = "零一幺二三四五六七八九"


@pytest.fixture(scope="module")
def model(model_cache: Path):
    return load_model(model_cache / "vosk-model-small-cn-0.22")


def recognize(rec: Recognizer, pcm: bytes, at: float) -> str:
    rec.accept(pcm, at)
    return rec.finish()


def id_clip() -> tuple[bytes, int]:
    files = {row["text"]: row["file"] for row in manifest(AUDIO / "callers-dev")}
    return load_pcm(AUDIO / "callers-dev" / files[ID_SPOKEN])


def digits_of(text: str) -> str:
    return "".join(ch for ch in text if ch in DIGITS)


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
    pcm, rate = id_clip()
    pool = RecognizerPool(model)
    rec = Recognizer(model, rate, pool=pool)
    free = recognize(rec, pcm, 0.0).text
    rec.set_phrases(grammar_phrases(ID_HINTS))
    restricted = recognize(rec, pcm, 10.0).text
    assert len(digits_of(restricted)) == 18  # free recognition lost digits to words ("迅速" for 四四)
    assert len(digits_of(free)) < 18
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


def nbest_decodes(model_dir: str) -> tuple[Transcript, Transcript, Transcript, Transcript]:
    """In a child process: the ID clip heard with the ID grammar 1-best, then with 4 alternatives
    asked, then with the same grammar no longer asking, then asking with free speech."""
    model = load_model(model_dir)
    pcm, rate = id_clip()
    phrases = grammar_phrases(ID_HINTS)
    plain = Recognizer(model, rate)
    plain.set_phrases(phrases)
    seed_dither(1)  # the same dither for both fresh recognizers: the same features
    one_best = recognize(plain, pcm, 0.0)
    rec = Recognizer(model, rate)
    rec.set_phrases(phrases, alternatives=4)
    seed_dither(1)
    nbest = recognize(rec, pcm, 0.0)
    rec.set_phrases(phrases)
    no_longer = recognize(rec, pcm, 10.0)
    rec.set_phrases(phrases, alternatives=4)
    rec.set_phrases(None, alternatives=4)
    free = recognize(rec, pcm, 20.0)
    rec.close()
    return one_best, nbest, no_longer, free


def test_alternatives_come_with_a_grammar_that_asked_for_them_and_go_with_it(model_cache):
    # Decoded in a spawned child: Kaldi's dither draws on the C library's process-wide rand(), and
    # these decodes would shift it for every later test in this process (test_vad_recall).
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        one_best, nbest, no_longer, free = child.submit(
            nbest_decodes, str(model_cache / "vosk-model-small-cn-0.22")).result(timeout=120)
    readings = [a.text for a in nbest.alternatives]
    assert 2 <= len(readings) <= 4 and len(set(readings)) == len(readings)  # different readings
    assert nbest.text == readings[0]  # the call hears the top reading
    grammar_words = {w for phrase in grammar_phrases(ID_HINTS) for w in phrase.split()}
    assert all(set(text.split()) <= grammar_words for text in readings)
    # Vosk's 1-best is its minimum-Bayes-risk reading, its n-best the lattice's best paths: they may
    # spell a digit differently (幺 or 一, both 1) but read the same number.
    assert len(digits_of(one_best.text)) == 18 and one_best.alternatives == ()
    assert digits_of(readings[0]).replace("幺", "一") == digits_of(one_best.text).replace("幺", "一")
    assert no_longer.alternatives == ()  # the same grammar, no longer asking
    assert free.alternatives == ()  # free speech never carries them (its recognizers are pooled)
