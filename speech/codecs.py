"""Audio encodings the telephony platforms send, decoded to 16-bit linear PCM.

G.711 is implemented with numpy lookup tables built once at import: decoding
is a 256-entry table, encoding a 65536-entry table indexed by the raw 16-bit
sample, so a 20 ms frame costs one fancy-indexing call. The tables reproduce
the values of the (deprecated, removed in 3.13) `audioop` functions with
width 2, which follow the ITU-T G.711 reference code.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt


class Encoding(str, enum.Enum):
    PCM16 = "pcm16"  # 16-bit signed little-endian linear PCM
    MULAW = "mulaw"  # G.711 mu-law
    ALAW = "alaw"  # G.711 A-law


class CodecError(ValueError):
    """Audio that cannot be decoded with the declared encoding."""


_PCM16 = np.dtype("<i2")  # explicit little-endian regardless of host order


def _ulaw_decode_table() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF  # codes are stored inverted
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55  # even bits are inverted on the wire
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    # Index i is the sample whose raw 16-bit pattern is i (uint16 view of int16).
    pcm = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    val = pcm >> 2  # mu-law works on 14-bit magnitudes
    mask = np.where(val < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(val), 8159) + (0x84 >> 2)  # clip, then add bias
    seg_end = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    seg = np.searchsorted(seg_end, mag, side="left")  # first segment with mag <= end
    code = (seg << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    val = pcm >> 3  # A-law works on 13-bit values
    mask = np.where(val >= 0, 0xD5, 0x55)
    mag = np.where(val >= 0, val, -val - 1)
    seg_end = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    seg = np.searchsorted(seg_end, mag, side="left")
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = (seg << 4) | ((mag >> shift) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


_ULAW_DECODE = _ulaw_decode_table().astype(_PCM16)
_ALAW_DECODE = _alaw_decode_table().astype(_PCM16)
_ULAW_ENCODE = _ulaw_encode_table()
_ALAW_ENCODE = _alaw_encode_table()


def _pcm16_codes(pcm16: bytes) -> npt.NDArray[np.uint16]:
    if len(pcm16) % 2:
        raise CodecError(
            f"16-bit PCM must have an even number of bytes, got {len(pcm16)}"
        )
    return np.frombuffer(pcm16, dtype="<u2")


def ulaw_decode(data: bytes) -> bytes:
    """G.711 mu-law bytes -> 16-bit little-endian PCM."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()


def ulaw_encode(pcm16: bytes) -> bytes:
    """16-bit little-endian PCM -> G.711 mu-law bytes."""
    return _ULAW_ENCODE[_pcm16_codes(pcm16)].tobytes()


def alaw_decode(data: bytes) -> bytes:
    """G.711 A-law bytes -> 16-bit little-endian PCM."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()


def alaw_encode(pcm16: bytes) -> bytes:
    """16-bit little-endian PCM -> G.711 A-law bytes."""
    return _ALAW_ENCODE[_pcm16_codes(pcm16)].tobytes()


def decode(encoding: Encoding, data: bytes) -> bytes:
    """Any supported encoding -> 16-bit little-endian PCM."""
    encoding = Encoding(encoding)
    if encoding is Encoding.PCM16:
        _pcm16_codes(data)  # validates the length
        return bytes(data)
    if encoding is Encoding.MULAW:
        return ulaw_decode(data)
    if encoding is Encoding.ALAW:
        return alaw_decode(data)
    raise CodecError(f"unsupported encoding {encoding!r}")  # pragma: no cover
