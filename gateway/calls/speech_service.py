"""The process's speech model, the bounded pool that runs recognition, and its warm-up."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from speech.codecs import CodecError, decode
from speech.recognizer import Recognizer, RecognizerPool, load_model
from speech.resample import StreamResampler
from speech.wavfile import read_wav

T = TypeVar("T")
log = logging.getLogger(__name__)

# Warm-up speech beyond this brings little more: the recognizer's graph cache is filled by then.
WARMUP_MAX_SECONDS = 60.0
WARMUP_NICENESS = 10  # warm-up yields the cores to live calls


def model_sample_rate(model_path: Path) -> int:
    """The rate the model's features were trained at (conf/mfcc.conf)."""
    conf = model_path / "conf" / "mfcc.conf"
    if conf.is_file():
        match = re.search(r"--sample-frequency=(\d+)", conf.read_text())
        if match:
            return int(match.group(1))
    return 16000


def load_warmup_speech(folder: Path, sample_rate: int, max_seconds: float = WARMUP_MAX_SECONDS) -> bytes:
    """The WAV files of `folder` (sorted, any rate), as one 16-bit PCM stream at `sample_rate`.

    Raises ValueError when the folder holds no readable speech."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a directory")
    gap = b"\0\0" * (sample_rate * 3 // 10)
    parts: list[bytes] = []
    total = 0
    for path in sorted(folder.glob("*.wav")):
        try:
            encoding, rate, channels, payload = read_wav(path)
            if channels != 1:
                raise CodecError(f"{channels} channels")
            resampler = StreamResampler(rate, sample_rate)
            pcm = resampler.process(decode(encoding, payload)) + resampler.flush()
        except (CodecError, ValueError, OSError) as exc:
            log.warning("warm-up audio: skipping %s: %s", path.name, exc)
            continue
        parts += [pcm, gap]
        total += len(pcm) + len(gap)
        if total >= 2 * sample_rate * max_seconds:
            break
    if not parts:
        raise ValueError(f"no readable mono WAV files in {folder}")
    return b"".join(parts)[: int(2 * sample_rate * max_seconds)]


class SpeechService:
    def __init__(self, model_path: Path, workers: int, pool_size: int = 32,
                 static_model_path: Path | None = None) -> None:
        """`static_model_path`: the same model with a precompiled graph (gateway.model.graph), for
        free speech; `model_path` then serves phrase-list recognizers only."""
        self.model_path = model_path
        self.sample_rate = model_sample_rate(model_path)
        self.workers = workers
        self._grammar_model = load_model(model_path)
        self._model = load_model(static_model_path) if static_model_path else self._grammar_model
        self.static_graph = static_model_path is not None
        self.pool = RecognizerPool(self._model, max_idle=pool_size)
        # Vosk releases the GIL while decoding, so threads give real parallelism;
        # one per core keeps the event loop's own thread free.
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="recognizer")
        self._stop_warmup = threading.Event()
        self._warmers: list[threading.Thread] = []
        self._warm_lock = threading.Lock()
        self.warming = 0  # recognizers still to warm

    def input_rate(self, call_rate: int) -> int:
        """The rate a call's audio is fed to the recognizer at.

        Narrowband audio goes in at its own rate: Vosk's internal resampling
        recognizes 8 kHz phone audio better (CER 7.1% vs 7.7% on the phone
        set) than our upsampling it first. Wider audio is brought down to the model's rate.
        """
        return min(call_rate, self.sample_rate)

    def new_recognizer(
        self,
        sample_rate: int,
        *,
        phrases: Iterable[str] | None = None,
        words: bool = True,
        max_alternatives: int = 0,
        partial_interval_s: float = 0.0,
    ) -> Recognizer:
        return Recognizer(
            self._model, sample_rate, phrases=phrases, words=words,
            max_alternatives=max_alternatives, partial_interval_s=partial_interval_s, pool=self.pool,
            grammar_model=self._grammar_model,
        )

    def start_warmup(self, pcm16: bytes, sample_rate: int, count: int) -> None:
        """Warm `count` pooled recognizers on this speech in background threads (one per
        worker, at low priority, so calls arriving meanwhile go first). Nothing to do on a static
        graph: its recognizers cost the same from their first second."""
        if self.static_graph:
            return
        count = min(count, self.pool.max_idle - self.pool.idle)
        if count <= 0:
            return
        self.warming = count
        for i in range(min(self.workers, count)):
            share = count // self.workers + (1 if i < count % self.workers else 0)
            thread = threading.Thread(
                target=self._warm, args=(pcm16, sample_rate, share), name=f"warmup-{i}", daemon=True
            )
            self._warmers.append(thread)
            thread.start()

    def _warm(self, pcm16: bytes, sample_rate: int, count: int) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WARMUP_NICENESS)
        except (AttributeError, OSError):  # not Linux: threads share the process priority
            pass
        left = count
        try:
            while left and self.pool.warm_up(sample_rate, pcm16, self._stop_warmup):
                left -= 1
                with self._warm_lock:
                    self.warming -= 1
        finally:
            with self._warm_lock:
                self.warming -= left  # not warmed: stopped, pool full or failed
                done = self.warming == 0
        if done and not self._stop_warmup.is_set():
            log.info("recognizer warm-up done: %d warm recognizers pooled", self.pool.idle)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._stop_warmup.set()
        for thread in self._warmers:
            thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)
