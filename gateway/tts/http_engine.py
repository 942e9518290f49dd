"""Speech synthesis by an HTTP text-to-speech provider.

Provider contract (write a small adapter service, or a subclass overriding
`_request`/`_audio`, to put a commercial API behind it):

Request::

    POST <url>
    Authorization: Bearer <api_key>        (only when an api_key is configured)
    Content-Type: application/json

    {"text": "您好，请问您要报案吗？",        # UTF-8 Chinese, punctuation kept
     "voice": "zh-CN-female-1",            # only when a voice is configured
     "sample_rate": 8000,                  # the rate the gateway plays at
     "format": "pcm16"}                    # 16-bit signed little-endian mono

Success: status 200 and one of

* ``Content-Type: audio/wav`` (also ``audio/x-wav``, ``audio/wave``): a RIFF
  file of mono PCM16; another rate than requested is resampled here.
* ``Content-Type: audio/L16`` or ``application/octet-stream``: headerless
  16-bit little-endian mono samples at the requested rate (an ``audio/L16;
  rate=N`` parameter overrides the rate). Note: RFC 2586 defines audio/L16 as
  big-endian; this contract follows the request's "pcm16" instead.

Failure: any status >= 400, ideally with ``{"error": "message"}`` (also
accepted: ``{"message": ...}``, ``{"error": {"message": ...}}`` or plain
text); the gateway reports status and message and plays nothing.

The client is synchronous because synthesis runs in a worker thread.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from speech.codecs import Encoding
from speech.resample import StreamResampler
from speech.tts import SynthesisError
from speech.wavfile import parse_wav

_WAV_TYPES = frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"})
_RAW_TYPES = frozenset({"audio/l16", "application/octet-stream"})
_MAX_MESSAGE = 300  # characters of a provider's error body worth logging


class HttpSynthesizer:
    """`Synthesizer` backed by a provider that follows the contract above."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        voice: str | None = None,
        sample_rate: int = 8000,
        timeout: float = 10,
    ) -> None:
        StreamResampler(sample_rate, sample_rate)  # validates the rate
        self.url = url
        self.voice = voice or None
        self.sample_rate = sample_rate
        self.name = f"http/{self.voice or 'default'}@{url}"
        headers = {"Accept": "audio/wav, audio/L16, application/octet-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # One pooled client: prompts are short, so connection reuse matters.
        self._client = httpx.Client(headers=headers, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpSynthesizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def synthesize(self, text: str) -> bytes:
        if not text.strip():
            return b""
        body: dict[str, Any] = {"text": text, "sample_rate": self.sample_rate, "format": "pcm16"}
        if self.voice:
            body["voice"] = self.voice
        try:
            response = self._client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise SynthesisError(f"TTS provider {self.url} unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise SynthesisError(
                f"TTS provider {self.url} returned {response.status_code}: {_error_message(response)}"
            )
        return self._audio(response)

    def _audio(self, response: httpx.Response) -> bytes:
        media_type, params = _content_type(response.headers.get("content-type", ""))
        data = response.content
        try:
            if media_type in _WAV_TYPES:
                encoding, rate, channels, pcm = parse_wav(data)
                if encoding is not Encoding.PCM16:
                    raise SynthesisError(f"TTS provider {self.url} sent {encoding.value} WAV, expected pcm16")
            elif media_type in _RAW_TYPES:
                rate, channels, pcm = int(params.get("rate", self.sample_rate)), int(params.get("channels", 1)), data
                if len(pcm) % 2:
                    raise SynthesisError(f"TTS provider {self.url} sent an odd number of PCM16 bytes")
            else:
                raise SynthesisError(
                    f"TTS provider {self.url} sent unsupported content type {media_type or '(none)'!r}"
                )
            if channels != 1:
                raise SynthesisError(f"TTS provider {self.url} sent {channels} channels, expected mono")
            resampler = StreamResampler(rate, self.sample_rate)
            return resampler.process(pcm) + resampler.flush()
        except ValueError as exc:  # CodecError, a bad rate parameter or one out of range
            raise SynthesisError(f"TTS provider {self.url} sent unusable audio: {exc}") from exc


def _content_type(header: str) -> tuple[str, dict[str, str]]:
    """'audio/L16; rate=8000' -> ('audio/l16', {'rate': '8000'})."""
    media_type, *rest = header.split(";")
    params: dict[str, str] = {}
    for item in rest:
        key, _, value = item.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return media_type.strip().lower(), params


def _error_message(response: httpx.Response) -> str:
    text = response.text.strip()
    try:
        payload = json.loads(text)
    except ValueError:
        return text[:_MAX_MESSAGE] or response.reason_phrase
    if isinstance(payload, dict):
        error = payload.get("error", payload.get("message"))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return str(error)[:_MAX_MESSAGE]
    return text[:_MAX_MESSAGE]
