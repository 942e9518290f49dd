"""Telephony payloads in, recognizer-ready gate events out (sans-I/O).

decode (G.711/PCM16) -> resample to the recognizer's rate -> VoiceGate.
"""

from __future__ import annotations

from .codecs import Encoding, decode
from .resample import StreamResampler
from .vad import GateEvent, VadConfig, VoiceGate


class AudioInput:
    """One call's inbound audio. Raises CodecError for undecodable payloads."""

    def __init__(
        self,
        encoding: Encoding,
        in_rate: int,
        out_rate: int,
        vad: VadConfig | None = None,
    ) -> None:
        self.encoding = Encoding(encoding)
        self._resampler = StreamResampler(in_rate, out_rate)
        self._gate = VoiceGate(out_rate, vad or VadConfig())
        self._in_rate = in_rate
        self._samples_in = 0  # counted before resampling: the resampler lags

    def feed(self, payload: bytes) -> list[GateEvent]:
        pcm16 = decode(self.encoding, payload)
        self._samples_in += len(pcm16) // 2
        return self._gate.feed(self._resampler.process(pcm16))

    def flush(self) -> list[GateEvent]:
        """End of stream: drain the resampler, then close any open utterance."""
        events = self._gate.feed(self._resampler.flush())
        return events + self._gate.flush()

    @property
    def rate(self) -> int:
        """The rate of the audio handed on (the recognizer's)."""
        return self._gate.sample_rate

    @property
    def seconds_in(self) -> float:
        """Audio received, in seconds."""
        return self._samples_in / self._in_rate

    @property
    def seconds_passed(self) -> float:
        """Audio handed on as SpeechAudio, in seconds."""
        return self._gate.seconds_passed
