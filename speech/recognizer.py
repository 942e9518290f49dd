"""One Vosk recognizer per call, fed only the audio the voice gate passes.

Vosk reports word times in seconds of audio *it was fed*. The gate skips
silence, so we keep anchors (recognizer time → call time) and map every word
back to the call's own clock.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import vosk

from .results import Alternative, Transcript, Word

log = logging.getLogger(__name__)

# Vosk's C++ side logs every utterance at info level and harmless alignment
# warnings on many finals; keep only its errors.
vosk.SetLogLevel(-2)

UNKNOWN_WORD = "[unk]"


def load_model(path: Path | str) -> vosk.Model:
    """Load a Vosk model directory (one per process; shared by every call)."""
    return vosk.Model(str(path))


class RecognizerPool:
    """Vosk recognizers without a grammar, kept between calls.

    With a graph composed on the fly (the small models as shipped) a recognizer
    caches what it expands: a fresh one spends ~2.5x the CPU of a warm one per
    second of speech until some 30-45 s of speech have passed through it, ~5 s
    of CPU in all. Such recognizers are therefore reset and reused instead of
    thrown away, and can be warmed before the first call (`warm_up`). With a
    static graph they need no warming; reuse still saves their set-up.
    Thread-safe.
    """

    def __init__(self, model: vosk.Model, max_idle: int = 16) -> None:
        self.model = model
        self.max_idle = max_idle
        self._idle: dict[int, list[tuple[vosk.KaldiRecognizer, int]]] = {}
        self._lock = threading.Lock()

    def acquire(self, sample_rate: int) -> tuple[vosk.KaldiRecognizer, int]:
        """A recognizer at this rate and the samples it was already fed (Vosk's clock runs on)."""
        with self._lock:
            idle = self._idle.get(sample_rate)
            if idle:
                return idle.pop()  # the most recently used: the warmest
        return vosk.KaldiRecognizer(self.model, sample_rate), 0

    def release(self, sample_rate: int, rec: vosk.KaldiRecognizer, fed_samples: int) -> bool:
        """Keep `rec` for another call; False when the pool is full (it is dropped)."""
        rec.Reset()
        with self._lock:
            if sum(len(v) for v in self._idle.values()) >= self.max_idle:
                return False
            self._idle.setdefault(sample_rate, []).append((rec, fed_samples))
            return True

    def warm_up(self, sample_rate: int, pcm16: bytes, stop: threading.Event | None = None) -> bool:
        """Warm one new recognizer on speech (16-bit PCM at `sample_rate`) and keep it.

        Blocking (seconds of CPU); `stop` ends it early. False when stopped or the pool is full.
        """
        if self.idle >= self.max_idle:
            return False
        rec = vosk.KaldiRecognizer(self.model, sample_rate)
        step = 2 * sample_rate // 5  # 0.2 s, so `stop` is seen promptly
        for offset in range(0, len(pcm16), step):
            if stop is not None and stop.is_set():
                return False
            rec.AcceptWaveform(pcm16[offset : offset + step])
        rec.FinalResult()
        return self.release(sample_rate, rec, len(pcm16) // 2)

    @property
    def idle(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._idle.values())


class Recognizer:
    """Streaming recognition of one call. Not thread-safe: one caller at a time."""

    def __init__(
        self,
        model: vosk.Model,
        sample_rate: int,
        *,
        phrases: Iterable[str] | None = None,
        words: bool = True,
        max_alternatives: int = 0,
        partial_interval_s: float = 0.0,
        pool: RecognizerPool | None = None,
        grammar_model: vosk.Model | None = None,
    ) -> None:
        """`model` recognizes free speech; `grammar_model` (default: `model`) builds phrase-list
        recognizers, for a model with a static graph cannot: Vosk makes a grammar's graph at run
        time from the two-part graph the small models ship with."""
        self.sample_rate = sample_rate
        self._pool = pool
        self._pooled = False  # self._rec came from the pool and has had no grammar
        self._grammar_model = grammar_model or model
        self._takes_grammar = False  # self._rec can switch grammars in place (SetGrammar)
        # Computing a partial costs ~15% more CPU; callers rarely need one per 20 ms frame.
        self.partial_interval_s = partial_interval_s
        self._since_partial = 0.0
        # A vocabulary change asked for mid-utterance, applied when it ends: (phrases,).
        self._pending_phrases: tuple[tuple[str, ...] | None, int] | None = None
        self._alternatives_now = 0
        self.words = words
        self.max_alternatives = max_alternatives
        self._model = model
        self._phrases = tuple(phrases) if phrases else None
        self._fed_samples = 0
        self._next_call_time: float | None = None
        self._rec = self._new_recognizer()
        # Parallel lists: recognizer time where a contiguous run starts, and its call time.
        self._anchor_rec: list[float] = [self._fed_samples / sample_rate]
        self._anchor_call: list[float] = [0.0]
        self._last_partial = ""
        self.utterance_has_audio = False
        # Thread CPU seconds inside Vosk: decoding (what any Vosk user pays for this audio) and
        # partial results (extra work asked of it); the rest of a call's CPU is the gateway's own.
        self.decode_cpu_s = 0.0
        self.partial_cpu_s = 0.0

    def _new_recognizer(self) -> vosk.KaldiRecognizer:
        """A recognizer for the current vocabulary; sets the clock base (`_fed_samples`)."""
        self._pooled = False
        self._fed_samples = 0
        self._takes_grammar = self._model is self._grammar_model
        if self._phrases:
            grammar = json.dumps([*self._phrases, UNKNOWN_WORD], ensure_ascii=False)
            rec = vosk.KaldiRecognizer(self._grammar_model, self.sample_rate, grammar)
            self._takes_grammar = True
        elif self._pool is not None:
            rec, self._fed_samples = self._pool.acquire(self.sample_rate)
            self._pooled = True
        else:
            rec = vosk.KaldiRecognizer(self._model, self.sample_rate)
        rec.SetWords(self.words)
        rec.SetPartialWords(self.words)
        if self.max_alternatives:
            rec.SetMaxAlternatives(self.max_alternatives)
        self._alternatives_now = self.max_alternatives
        return rec

    # Configuration -----------------------------------------------------------
    @property
    def phrases(self) -> tuple[str, ...] | None:
        return self._phrases

    def set_phrases(self, phrases: Iterable[str] | None, alternatives: int = 0) -> None:
        """Restrict recognition to these phrases (None: the full vocabulary), from the next utterance;
        with `alternatives`, finals heard with the phrases carry that many n-best alternatives.

        An utterance in progress keeps the vocabulary it started with: switching
        mid-word would garble it (the caller may already be answering).
        """
        wanted = tuple(phrases) if phrases else None
        if self.utterance_has_audio:
            self._pending_phrases = (wanted, alternatives)
            return
        self._apply_phrases(wanted, alternatives)

    def _apply_phrases(self, phrases: tuple[str, ...] | None, alternatives: int = 0) -> None:
        self._pending_phrases = None
        if phrases == self._phrases:
            self._set_alternatives(alternatives if phrases else 0)
            return
        self._phrases = phrases
        if self._phrases and self._takes_grammar:
            self._rec.SetGrammar(json.dumps([*self._phrases, UNKNOWN_WORD], ensure_ascii=False))
            self._pooled = False  # a grammar sticks to a recognizer: it is not reused for other calls
        else:
            # Vosk cannot drop a grammar from a live recognizer, nor give one to a recognizer on a
            # static graph: take another at the same call clock.
            self._release()
            self._rec = self._new_recognizer()
            self._rebase()
        self._set_alternatives(alternatives if phrases else 0)

    def _set_alternatives(self, alternatives: int) -> None:
        """N-best output for a grammar's recognizer only (those are never pooled, so no other call
        inherits it); 0: back to the call's own `max_alternatives`."""
        wanted = alternatives or self.max_alternatives
        if wanted != self._alternatives_now:
            self._rec.SetMaxAlternatives(wanted)
            self._alternatives_now = wanted

    def set_output(self, *, words: bool | None = None, max_alternatives: int | None = None) -> None:
        if words is not None:
            self.words = words
            self._rec.SetWords(words)
            self._rec.SetPartialWords(words)
        if max_alternatives is not None:
            self.max_alternatives = max_alternatives
            self._rec.SetMaxAlternatives(max_alternatives)
            self._alternatives_now = max_alternatives

    # Audio -------------------------------------------------------------------
    def accept(self, pcm16: bytes, call_time: float) -> Transcript | None:
        """Feed audio whose first sample is at `call_time`.

        Returns a final result when Vosk ended an utterance, else a partial
        result when `partial_interval_s` of audio has passed since the last
        one, else None.
        """
        if self._next_call_time is None or abs(call_time - self._next_call_time) > 1e-3:
            self._anchor_rec.append(self._fed_samples / self.sample_rate)
            self._anchor_call.append(call_time)
        n = len(pcm16) // 2
        self._fed_samples += n
        self._next_call_time = call_time + n / self.sample_rate
        if n:
            self.utterance_has_audio = True
        self._since_partial += n / self.sample_rate
        started = time.thread_time()
        if self._rec.AcceptWaveform(pcm16):
            raw = self._rec.Result()
            self.decode_cpu_s += time.thread_time() - started
            return self._final(raw)
        self.decode_cpu_s += time.thread_time() - started
        if self._since_partial >= self.partial_interval_s:
            return self.partial()
        return None

    def partial(self) -> Transcript:
        self._since_partial = 0.0
        started = time.thread_time()
        raw = json.loads(self._rec.PartialResult())
        self.partial_cpu_s += time.thread_time() - started
        text = raw.get("partial", "")
        self._last_partial = text
        words = self._words(raw.get("partial_result", []))
        return Transcript(text=text, final=False, words=words)

    def finish(self) -> Transcript:
        """End the current utterance and return its final result."""
        started = time.thread_time()
        raw = self._rec.FinalResult()
        self.decode_cpu_s += time.thread_time() - started
        return self._final(raw)

    # Results -----------------------------------------------------------------
    def _final(self, raw_json: str) -> Transcript:
        self.utterance_has_audio = False
        self._since_partial = 0.0
        result = self._parse_final(raw_json)
        if self._pending_phrases is not None:
            self._apply_phrases(*self._pending_phrases)
        return result

    def _parse_final(self, raw_json: str) -> Transcript:
        self._last_partial = ""
        raw: dict[str, Any] = json.loads(raw_json)
        if "alternatives" in raw:
            alternatives = tuple(
                Alternative(
                    text=_clean(alt.get("text", "")),
                    confidence=float(alt.get("confidence", 0.0)),
                    words=self._words(alt.get("result", [])),
                )
                for alt in raw["alternatives"]
            )
            best = alternatives[0] if alternatives else Alternative("", 0.0)
            text, words = best.text, best.words
        else:
            alternatives = ()
            text, words = _clean(raw.get("text", "")), self._words(raw.get("result", []))
        words = tuple(w for w in words if w.word != UNKNOWN_WORD)
        confidence = sum(w.conf for w in words) / len(words) if words else None
        return Transcript(
            text=text,
            final=True,
            words=words,
            confidence=confidence,
            start=words[0].start if words else None,
            end=words[-1].end if words else None,
            alternatives=alternatives,
        )

    def _words(self, items: list[dict[str, Any]]) -> tuple[Word, ...]:
        return tuple(
            Word(
                word=item["word"],
                start=round(self._call_time(float(item["start"])), 3),
                end=round(self._call_time(float(item["end"])), 3),
                conf=float(item.get("conf", 1.0)),
            )
            for item in items
        )

    def _call_time(self, rec_time: float) -> float:
        i = bisect.bisect_right(self._anchor_rec, rec_time) - 1
        return self._anchor_call[i] + (rec_time - self._anchor_rec[i])

    def _rebase(self) -> None:
        # Another Vosk recognizer has its own clock (zero, or where a pooled one stopped).
        self._anchor_rec = [self._fed_samples / self.sample_rate]
        self._anchor_call = [self._next_call_time or 0.0]

    def _release(self) -> None:
        if self._pooled and self._pool is not None:
            self._pool.release(self.sample_rate, self._rec, self._fed_samples)
        self._pooled = False

    def close(self) -> None:
        """The call is over: a reusable recognizer goes back to the pool."""
        self._release()


def grammar_phrases(hints: Iterable[str]) -> tuple[str, ...]:
    """Hint phrases as Vosk grammar entries: Chinese spelled character by character.

    The model's lexicon lacks many multi-character words ("身份证号"), and Vosk
    drops a grammar word it doesn't know; single characters are all in it.
    """
    out = []
    for hint in hints:
        parts = []
        for token in hint.split():
            parts.extend(token if all("\u4e00" <= ch <= "\u9fff" for ch in token) else [token])
        out.append(" ".join(parts))
    return tuple(dict.fromkeys(out))


def _clean(text: str) -> str:
    return " ".join(w for w in text.split() if w != UNKNOWN_WORD)
