"""Counters and gauges, rendered in the Prometheus text exposition format."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Metrics:
    calls_total: dict[str, int] = field(default_factory=dict)  # by protocol
    calls_refused: dict[str, int] = field(default_factory=dict)  # by reason
    protocol_errors: int = 0
    audio_seconds_in: float = 0.0  # all call audio received
    audio_seconds_decoded: float = 0.0  # audio the voice gate passed to the recognizer
    recognizer_seconds: float = 0.0  # wall time spent inside the recognizer
    transcripts_final: int = 0
    recognizer_batches: int = 0  # trips of gated audio to the recognizer threads
    vosk_decode_cpu_s: float = 0.0  # thread CPU inside Vosk decoding
    vosk_partial_cpu_s: float = 0.0  # thread CPU inside Vosk partial results
    ignored_messages: dict[str, int] = field(default_factory=dict)  # by protocol: stray text the call survived
    sample_rate_assumed: dict[tuple[str, int], int] = field(default_factory=dict)  # by (protocol, rate)
    sample_rate_mismatch: dict[str, int] = field(default_factory=dict)  # by protocol

    @staticmethod
    def _bump(counter: dict, key) -> None:
        counter[key] = counter.get(key, 0) + 1

    def count_ignored(self, protocol: str) -> None:
        self._bump(self.ignored_messages, protocol)

    def count_rate_assumed(self, protocol: str, rate: int) -> None:
        self._bump(self.sample_rate_assumed, (protocol, rate))

    def count_rate_mismatch(self, protocol: str) -> None:
        self._bump(self.sample_rate_mismatch, protocol)

    def count_call(self, protocol: str) -> None:
        self.calls_total[protocol] = self.calls_total.get(protocol, 0) + 1

    def count_refusal(self, reason: str) -> None:
        self.calls_refused[reason] = self.calls_refused.get(reason, 0) + 1

    @property
    def real_time_factor(self) -> float:
        """Recognizer time per second of decoded audio (lower is faster)."""
        return self.recognizer_seconds / self.audio_seconds_decoded if self.audio_seconds_decoded else 0.0

    def render(
        self, *, active_calls: int, max_calls: int, decode_lag: float, recognizers_idle: int = 0,
        recognizers_warming: int = 0, static_graph: bool = False,
    ) -> str:
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                lines.append(f"{name}{labels} {value:g}")

        metric("gateway_active_calls", "gauge", "Calls in progress.", [("", active_calls)])
        metric("gateway_max_calls", "gauge", "Configured call capacity.", [("", max_calls)])
        metric(
            "gateway_calls_total",
            "counter",
            "Calls accepted, by protocol.",
            [(f'{{protocol="{p}"}}', n) for p, n in sorted(self.calls_total.items())] or [("", 0)],
        )
        metric(
            "gateway_calls_refused_total",
            "counter",
            "Calls refused, by reason.",
            [(f'{{reason="{r}"}}', n) for r, n in sorted(self.calls_refused.items())] or [("", 0)],
        )
        metric("gateway_protocol_errors_total", "counter", "Calls closed for a protocol error.", [("", self.protocol_errors)])
        metric("gateway_audio_seconds_in_total", "counter", "Seconds of call audio received.", [("", self.audio_seconds_in)])
        metric(
            "gateway_audio_seconds_decoded_total",
            "counter",
            "Seconds of audio passed by the voice gate to the recognizer.",
            [("", self.audio_seconds_decoded)],
        )
        metric("gateway_recognizer_seconds_total", "counter", "Wall seconds spent in the recognizer.", [("", self.recognizer_seconds)])
        metric("gateway_real_time_factor", "gauge", "Recognizer seconds per decoded audio second.", [("", round(self.real_time_factor, 4))])
        metric("gateway_decode_lag_seconds", "gauge", "Largest lag of recognition behind real time over active calls.", [("", round(decode_lag, 3))])
        metric("gateway_vosk_cpu_seconds_total", "counter",
               "Thread CPU seconds inside Vosk: decoding, and partial results.",
               [('{kind="decode"}', round(self.vosk_decode_cpu_s, 4)), ('{kind="partial"}', round(self.vosk_partial_cpu_s, 4))])
        metric("gateway_recognizer_batches_total", "counter", "Batches of gated audio sent to the recognizer threads.",
               [("", self.recognizer_batches)])
        metric("gateway_recognizers_idle", "gauge", "Warm recognizers pooled for the next calls.", [("", recognizers_idle)])
        metric("gateway_recognizers_warming", "gauge", "Recognizers still being warmed up at start.", [("", recognizers_warming)])
        metric("gateway_static_graph", "gauge", "1 when free speech is decoded on the compiled static graph.",
               [("", int(static_graph))])
        metric("gateway_ignored_messages_total", "counter", "Messages outside the protocol that were ignored, by protocol.",
               [(f'{{protocol="{p}"}}', n) for p, n in sorted(self.ignored_messages.items())] or [("", 0)])
        metric("gateway_sample_rate_assumed_total", "counter",
               "Calls whose sample rate nothing stated, so a default was assumed, by protocol and rate.",
               [(f'{{protocol="{p}",rate="{r}"}}', n) for (p, r), n in sorted(self.sample_rate_assumed.items())]
               or [("", 0)])
        metric("gateway_sample_rate_mismatch_total", "counter",
               "Real-time calls whose audio arrived too fast for their sample rate, by protocol.",
               [(f'{{protocol="{p}"}}', n) for p, n in sorted(self.sample_rate_mismatch.items())] or [("", 0)])
        metric("gateway_transcripts_final_total", "counter", "Final transcripts produced.", [("", self.transcripts_final)])
        return "\n".join(lines) + "\n"
