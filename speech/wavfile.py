"""Minimal RIFF/WAVE reader for PCM16, A-law and mu-law files.

The stdlib `wave` module only opens format tag 1 (PCM); telephony recordings
are usually stored as G.711 (tags 6 and 7), so we walk the chunks ourselves.
"""

from __future__ import annotations

import os
import struct

from .codecs import CodecError, Encoding

_FORMATS: dict[tuple[int, int], Encoding] = {
    (1, 16): Encoding.PCM16,
    (6, 8): Encoding.ALAW,
    (7, 8): Encoding.MULAW,
}
_EXTENSIBLE = 0xFFFE  # WAVE_FORMAT_EXTENSIBLE: real tag is in the sub-format GUID


def parse_wav(data: bytes) -> tuple[Encoding, int, int, bytes]:
    """Parse WAV bytes -> (encoding, sample_rate, channels, payload)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise CodecError("not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    payload: bytes | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise CodecError("WAV fmt chunk too short")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _EXTENSIBLE and len(body) >= 26:
                (tag,) = struct.unpack_from("<H", body, 24)
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            payload = body  # tolerate a size field that overruns the file
        pos += 8 + size + (size & 1)  # chunks are padded to even length
    if fmt is None or payload is None:
        raise CodecError("WAV file lacks a fmt or data chunk")
    tag, channels, rate, bits = fmt
    encoding = _FORMATS.get((tag, bits))
    if encoding is None:
        raise CodecError(f"unsupported WAV format tag {tag} with {bits} bits")
    frame_bytes = channels * bits // 8
    payload = payload[: len(payload) - len(payload) % frame_bytes]
    return encoding, rate, channels, payload


def read_wav(path: str | os.PathLike[str]) -> tuple[Encoding, int, int, bytes]:
    """Read a WAV file -> (encoding, sample_rate, channels, payload bytes)."""
    with open(path, "rb") as f:
        return parse_wav(f.read())
