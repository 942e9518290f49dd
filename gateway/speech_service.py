"""The process's one speech model and the bounded pool that runs recognition."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from speech.recognizer import Recognizer, RecognizerPool, load_model

T = TypeVar("T")


def model_sample_rate(model_path: Path) -> int:
    """The rate the model's features were trained at (conf/mfcc.conf)."""
    conf = model_path / "conf" / "mfcc.conf"
    if conf.is_file():
        match = re.search(r"--sample-frequency=(\d+)", conf.read_text())
        if match:
            return int(match.group(1))
    return 16000


class SpeechService:
    def __init__(self, model_path: Path, workers: int) -> None:
        self.model_path = model_path
        self.sample_rate = model_sample_rate(model_path)
        self.workers = workers
        self._model = load_model(model_path)
        self.pool = RecognizerPool(self._model, max_idle=max(4 * workers, 8))
        # Vosk releases the GIL while decoding, so threads give real parallelism;
        # one per core keeps the event loop's own thread free.
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="recognizer")

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
        )

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
