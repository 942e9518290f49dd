"""One call's audio on its way to the recognizer, for the shell: the stream, the recognizer, the trips.

The batching is `speech.stream.SpeechStream` (sans-I/O); this part of the shell
owns the call's recognizer and runs every decoding trip in the recognition pool,
so the event loop never blocks on Vosk.
"""

from __future__ import annotations

from speech.codecs import Encoding
from speech.pipeline import AudioInput
from speech.recognizer import Recognizer
from speech.stream import RecognitionOutcome, SpeechStream, recognize
from speech.vad import GateEvent, VadConfig

from gateway.services import Services
from gateway.telephony.base import ConfigUpdate


def merge(outcome: RecognitionOutcome | None, more: RecognitionOutcome) -> RecognitionOutcome:
    if outcome is None:
        return more
    outcome.merge(more)
    return outcome


class CallRecognition:
    def __init__(self, services: Services, encoding: Encoding, vad: VadConfig) -> None:
        self.services = services
        self.encoding = encoding
        self.vad = vad
        self.stream: SpeechStream | None = None
        self.recognizer: Recognizer | None = None
        self.rate = 0

    @property
    def ready(self) -> bool:
        return self.stream is not None and self.recognizer is not None

    async def open(self, rate: int, phrases: tuple[str, ...] | None, words: bool, max_alternatives: int) -> str | None:
        """Audio input and recognizer for this audio format; why not, if it is unsupported."""
        speech = self.services.speech
        recognizer_rate = speech.input_rate(rate)
        self.rate = rate
        if self.recognizer is not None:
            await speech.run(self.recognizer.close)
        try:
            audio = AudioInput(self.encoding, rate, recognizer_rate, self.vad)
        except ValueError as exc:
            return str(exc)
        if self.stream is None:
            self.stream = SpeechStream(audio, self.services.settings.recognize_batch_ms / 1000)
        else:
            self.stream.switch(audio)
        self.recognizer = await speech.run(
            lambda: speech.new_recognizer(
                recognizer_rate, phrases=phrases, words=words, max_alternatives=max_alternatives,
                partial_interval_s=self.services.settings.partial_interval_ms / 1000,
            )
        )
        return None

    async def recognize(self, outcome: RecognitionOutcome | None, events: list[GateEvent],
                        flush: bool = False) -> RecognitionOutcome | None:
        """Decode these gate events now (in the recognition pool)."""
        if not events and not flush:
            return outcome
        assert self.recognizer is not None and self.stream is not None
        self.services.metrics.recognizer_batches += 1
        more = await self.services.speech.run(recognize, self.recognizer, events, flush)
        self.stream.decoded(more)
        return merge(outcome, more)

    async def configure(self, event: ConfigUpdate, outcome: RecognitionOutcome | None
                        ) -> tuple[RecognitionOutcome | None, str | None]:
        """New recognizer settings mid-call; what was decoded, and why a new format is unsupported."""
        if self.recognizer is None or self.stream is None:
            return outcome, None
        recognizer, run = self.recognizer, self.services.speech.run
        outcome = await self.recognize(outcome, self.stream.take())  # audio already received keeps its settings
        if event.phrases is not None:
            await run(recognizer.set_phrases, event.phrases or None)
        if event.words is not None or event.max_alternatives is not None:
            await run(lambda: recognizer.set_output(words=event.words, max_alternatives=event.max_alternatives))
        if event.sample_rate and event.sample_rate != self.rate:
            # The input format changed: finish what was said, then decode at the new rate.
            outcome = merge(outcome, await self.flush())
            error = await self.open(event.sample_rate, recognizer.phrases, recognizer.words, recognizer.max_alternatives)
            return outcome, error
        return outcome, None

    async def set_phrases(self, phrases: tuple[str, ...] | None, alternatives: int = 0) -> None:
        if self.recognizer is not None:
            await self.services.speech.run(self.recognizer.set_phrases, phrases, alternatives)

    async def flush(self) -> RecognitionOutcome:
        """End of audio: whatever is buffered goes through the recognizer one last time."""
        events = self.stream.flush() if self.stream is not None and self.recognizer is not None else None
        if events is None:
            return RecognitionOutcome()
        return await self.recognize(None, events, flush=True) or RecognitionOutcome()

    async def close(self) -> None:
        if self.recognizer is not None:
            await self.services.speech.run(self.recognizer.close)
        self.recognizer = None
        self.stream = None
