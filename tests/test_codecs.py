"""G.711 tables against audioop (the reference the telephony world used), WAV reading."""

from __future__ import annotations

import struct
import warnings
import wave
from pathlib import Path

import numpy as np
import pytest

from speech.codecs import (
    CodecError,
    Encoding,
    alaw_decode,
    alaw_encode,
    decode,
    ulaw_decode,
    ulaw_encode,
)
from speech.wavfile import parse_wav, read_wav

from audio_helpers import PHONE, REAL

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # reference only; removed in Python 3.13

ALL_CODES = bytes(range(256))
ALL_PCM = np.arange(-32768, 32768, dtype="<i2").tobytes()  # every 16-bit value


def test_decode_tables_equal_audioop_for_all_codes() -> None:
    assert ulaw_decode(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert alaw_decode(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)


def test_encode_equals_audioop_for_every_pcm_value() -> None:
    assert ulaw_encode(ALL_PCM) == audioop.lin2ulaw(ALL_PCM, 2)
    assert alaw_encode(ALL_PCM) == audioop.lin2alaw(ALL_PCM, 2)


def test_round_trip_matches_audioop_and_stays_close() -> None:
    x = np.frombuffer(ALL_PCM, dtype="<i2").astype(np.int64)
    for encode, decode_, ref_enc, ref_dec in (
        (ulaw_encode, ulaw_decode, audioop.lin2ulaw, audioop.ulaw2lin),
        (alaw_encode, alaw_decode, audioop.lin2alaw, audioop.alaw2lin),
    ):
        back = decode_(encode(ALL_PCM))
        assert back == ref_dec(ref_enc(ALL_PCM, 2), 2)
        y = np.frombuffer(back, dtype="<i2").astype(np.int64)
        # Companding error grows with the magnitude: at most ~1/16 of it.
        assert np.all(np.abs(y - x) <= np.maximum(np.abs(x) // 16, 16) + 8)


def test_codes_survive_decode_then_encode() -> None:
    assert alaw_encode(alaw_decode(ALL_CODES)) == ALL_CODES
    # mu-law has two zeros (0x7F = -0, 0xFF = +0); zero encodes as 0xFF.
    expected = ALL_CODES.replace(b"\x7f", b"\xff")
    assert ulaw_encode(ulaw_decode(ALL_CODES)) == expected


def test_decode_dispatches_by_encoding() -> None:
    pcm = np.array([0, 1000, -1000, 32767], dtype="<i2").tobytes()
    assert decode(Encoding.PCM16, pcm) == pcm
    assert decode(Encoding.MULAW, ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert decode(Encoding.ALAW, ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)
    assert decode("mulaw", ALL_CODES) == ulaw_decode(ALL_CODES)  # type: ignore[arg-type]
    assert decode(Encoding.MULAW, b"") == b""


def test_odd_pcm16_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="even number of bytes, got 3"):
        decode(Encoding.PCM16, b"\x00\x01\x02")
    with pytest.raises(CodecError):
        ulaw_encode(b"\x00")
    assert issubclass(CodecError, ValueError)


def test_frame_decoding_is_a_table_lookup() -> None:
    # its speed is in bench/shell_frame_cost.py; here: every byte maps, and the map is total
    frame = bytes(range(256))
    pcm = ulaw_decode(frame)
    assert len(pcm) == 2 * 256
    assert ulaw_decode(frame * 3) == pcm * 3


# -- WAV reading ------------------------------------------------------------


def test_reads_mulaw_phone_recordings() -> None:
    assert len(PHONE) == 9
    for path in PHONE:
        encoding, rate, channels, payload = read_wav(path)
        assert (encoding, rate, channels) == (Encoding.MULAW, 8000, 1)
        with wave.open(str(REAL[PHONE.index(path)])) as w:
            seconds = w.getnframes() / w.getframerate()
        assert abs(len(payload) / 8000 - seconds) < 0.01


def test_reads_pcm16_like_the_wave_module() -> None:
    for path in REAL[:3]:
        encoding, rate, channels, payload = read_wav(path)
        with wave.open(str(path)) as w:
            assert (rate, channels) == (w.getframerate(), w.getnchannels())
            assert payload == w.readframes(w.getnframes())
        assert encoding is Encoding.PCM16


def _wav(tag: int, bits: int, payload: bytes, rate: int = 8000, extra: bytes = b"") -> bytes:
    block = bits // 8
    fmt = struct.pack("<HHIIHH", tag, 1, rate, rate * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    chunks += b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def test_reads_alaw_and_skips_unknown_chunks(tmp_path: Path) -> None:
    odd_chunk = b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # padded to even
    path = tmp_path / "a.wav"
    path.write_bytes(_wav(6, 8, ALL_CODES, extra=odd_chunk))
    assert read_wav(path) == (Encoding.ALAW, 8000, 1, ALL_CODES)


def test_rejects_unsupported_or_broken_files() -> None:
    with pytest.raises(CodecError, match="format tag 3"):
        parse_wav(_wav(3, 32, bytes(8)))  # float
    with pytest.raises(CodecError, match="RIFF"):
        parse_wav(b"OggS" + bytes(40))
    with pytest.raises(CodecError, match="fmt or data"):
        parse_wav(b"RIFF" + struct.pack("<I", 4) + b"WAVE")
