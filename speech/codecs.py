"""Audio encodings the telephony platforms send. (Implementation pending.)"""

from __future__ import annotations

import enum


class Encoding(str, enum.Enum):
    PCM16 = "pcm16"  # 16-bit signed little-endian linear PCM
    MULAW = "mulaw"  # G.711 mu-law
    ALAW = "alaw"  # G.711 A-law


class CodecError(ValueError):
    """Audio that cannot be decoded with the declared encoding."""
