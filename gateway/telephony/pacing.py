"""Whether a real-time stream's audio keeps pace with the wall clock at its stated rate, sans I/O.

A platform that streams a live call (a FreeSWITCH media bug) sends audio as it is
spoken: one second of audio per second. The call's audio clock counts seconds at the
sample rate the call was opened with, so when that rate is wrong the two clocks drift
apart at once: 16 kHz L16 taken for 8 kHz gives two seconds of "audio" per second.
Its byte rate is the most robust sign there is (no spectrum needed, speech or silence
alike), and it needs nothing but the clock and the audio position the core has anyway.
"""

from __future__ import annotations

# A connection may first deliver a burst of buffered audio (mod_audio_fork buffers up to
# 2 s while it connects): the measure starts once that has passed.
SETTLE_S = 1.0
WINDOW_S = 3.0  # wall seconds measured: long enough to average out network jitter
TOO_FAST = 1.5  # audio per wall second above which the rate cannot be right (16k as 8k gives 2)


class PaceCheck:
    """Measures audio seconds per wall second once, over `WINDOW_S` after `SETTLE_S`.

    Only a stream running too fast is a sure sign: one running slow may just be paused
    (`uuid_audio_stream <uuid> pause`) or on hold.
    """

    __slots__ = ("_first_at", "_base_at", "_base_position")

    def __init__(self) -> None:
        self._first_at: float | None = None
        self._base_at: float | None = None
        self._base_position = 0.0

    def observe(self, now: float, position: float) -> float | None:
        """After a message carrying audio (`position`: audio seconds received so far): None
        while the measure runs, then the audio seconds per wall second over the window."""
        if self._first_at is None:
            self._first_at = now
            return None
        if self._base_at is None:
            if now - self._first_at >= SETTLE_S:
                self._base_at, self._base_position = now, position
            return None
        elapsed = now - self._base_at
        if elapsed < WINDOW_S:
            return None
        return (position - self._base_position) / elapsed

    @staticmethod
    def too_fast(ratio: float) -> bool:
        return ratio >= TOO_FAST
