"""Shared helpers for adapters whose protocols carry JSON text frames.

Parsing helpers raise `FrameError`; each adapter catches it at its
`receive_*` boundary and turns it into a `ProtocolError` event, so the
adapters themselves never raise on peer input.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any, Iterable, Mapping, NoReturn

from gateway.telephony.base import ProtocolError
from speech.results import Word

# WebSocket close codes (RFC 6455, section 7.4.1).
UNSUPPORTED_DATA = 1003  # a frame type or format we cannot take (binary on a text protocol, a codec)
INVALID_PAYLOAD = 1007  # the frame is of the right type but its content is broken
POLICY_VIOLATION = 1008  # well-formed, but not allowed now (out of order, duplicate start)

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000


class FrameError(Exception):
    """A frame broke the protocol; carries the close code the shell should use."""

    def __init__(self, message: str, close_code: int = INVALID_PAYLOAD) -> None:
        super().__init__(message)
        self.message = message
        self.close_code = close_code

    def event(self) -> ProtocolError:
        return ProtocolError(message=self.message, close_code=self.close_code)


def fail(message: str, close_code: int = INVALID_PAYLOAD) -> NoReturn:
    raise FrameError(message, close_code)


def _reject_constant(name: str) -> NoReturn:
    # NaN/Infinity are not JSON; Python accepts them by default.
    raise ValueError(f"{name} is not allowed")


def parse_object(text: str, protocol: str) -> dict[str, Any]:
    """Parse one text frame that must hold a JSON object."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested input
        fail(f"{protocol}: text frame is not valid JSON ({_short(exc)})")
    if not isinstance(value, dict):
        fail(f"{protocol}: text frame must be a JSON object, got {type(value).__name__}")
    return value


def dumps(obj: Any) -> str:
    """Serialize an outbound frame: UTF-8 Chinese as is, compact."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def get_object(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> dict[str, Any]:
    value = obj.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        fail(f"{where}: field {key!r} must be a JSON object")
    return value


def get_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        fail(f"{where}: missing field {key!r}")
    if not isinstance(value, str):
        fail(f"{where}: field {key!r} must be a string")
    return value


def optional_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    """A string field that may be absent or null."""
    return None if obj.get(key) is None else get_str(obj, key, where)


def first_scalar(obj: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    """The first of `keys` present with a string or number value, as a string.

    Metadata written by dialplans and apps is loosely typed (a caller number
    may arrive as a JSON number), so numbers are accepted and stringified.
    """
    for key in keys:
        value = obj.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (str, int, float)):
            text = str(value).strip()
            if text:
                return text
    return None


def string_params(obj: Mapping[str, Any]) -> dict[str, str]:
    """Flatten a metadata object to str -> str, dropping nested values."""
    params: dict[str, str] = {}
    for key, value in obj.items():
        if isinstance(value, str):
            params[key] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            params[key] = str(value)
        elif isinstance(value, bool):
            params[key] = "true" if value else "false"
    return params


def parse_sample_rate(value: Any, where: str) -> int:
    """A sample rate given as a JSON number (or numeric string from a URL/metadata)."""
    rate: float
    if isinstance(value, bool):
        fail(f"{where}: sample rate must be a number")
    if isinstance(value, (int, float)):
        rate = value
    elif isinstance(value, str):
        try:
            rate = float(value.strip())
        except ValueError:
            fail(f"{where}: sample rate {value!r} is not a number")
    else:
        fail(f"{where}: sample rate must be a number")
    if not math.isfinite(rate) or rate != int(rate):
        fail(f"{where}: sample rate {value!r} is not a whole number")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        fail(f"{where}: sample rate {int(rate)} outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
    return int(rate)


def decode_base64(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        fail(f"{where}: audio payload must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        fail(f"{where}: audio payload is not valid base64 ({_short(exc)})")


def check_pcm16(data: bytes, where: str) -> bytes:
    # 16-bit samples come in pairs of bytes; an odd length means a truncated or foreign frame.
    if len(data) % 2:
        fail(f"{where}: 16-bit PCM frame has odd length {len(data)}")
    return data


def encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _round(value: float) -> float:
    # vosk prints 6 decimals; avoid 0.30000000000000004 on the wire.
    return round(float(value), 6)


def word_dicts(words: Iterable[Word], *, with_conf: bool = True) -> list[dict[str, Any]]:
    """Words as vosk prints them: {"conf", "end", "start", "word"}.

    vosk leaves `conf` out of the words inside `alternatives`, hence `with_conf`.
    """
    out: list[dict[str, Any]] = []
    for w in words:
        item: dict[str, Any] = {}
        if with_conf:
            item["conf"] = _round(w.conf)
        item["end"] = _round(w.end)
        item["start"] = _round(w.start)
        item["word"] = w.word
        out.append(item)
    return out


def round_conf(value: float) -> float:
    return _round(value)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
