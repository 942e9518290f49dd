"""Link tokens for the survey SMS: short, base62, with a keyed checksum so garbage is refused
before any database look-up, and derived from a per-invitation salt so a link can be rebuilt.

A token is BODY_LENGTH base62 characters of body (HMAC-SHA256(key, b"link" + salt), 77 bits) and
two checksum characters: the first a keyed weighted sum of the body's digits mod 62 (weights
coprime to 62, so every single-character change of the body is caught, never by chance), the
second an HMAC of the body mod 62. The store keeps the salt and sha256(token) only: a database
dump alone yields no link, and the same invitation always yields the same link.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LENGTH = 13  # 62**13 > 2**77
CHECK_LENGTH = 2
TOKEN_LENGTH = BODY_LENGTH + CHECK_LENGTH
SALT_BYTES = 16
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
# Odd and not a multiple of 31: invertible mod 62, so a changed digit always changes the sum.
_WEIGHTS = (1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25)


def _base62(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        out.append(ALPHABET[digit])
    return "".join(reversed(out))


def _mac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _checksum(key: bytes, body: str) -> str:
    offset = _mac(key, b"offset")[0]
    linear = (offset + sum(w * _INDEX[c] for w, c in zip(_WEIGHTS, body))) % 62
    keyed = int.from_bytes(_mac(key, b"check" + body.encode("ascii"))[:4], "big") % 62
    return ALPHABET[linear] + ALPHABET[keyed]


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def make_token(key: bytes, salt: bytes) -> str:
    """The invitation's link token: the same key and salt always give the same token."""
    if not key:
        raise ValueError("the link key is empty")
    digest = _mac(key, b"link" + salt)
    body = _base62(int.from_bytes(digest[:12], "big") % 62**BODY_LENGTH, BODY_LENGTH)
    return body + _checksum(key, body)


def well_formed(token: str, key: bytes) -> bool:
    """Length, alphabet and checksum: False for garbage, typos and most forgeries, without a look-up."""
    if not isinstance(token, str) or len(token) != TOKEN_LENGTH or any(c not in _INDEX for c in token):
        return False
    body, check = token[:BODY_LENGTH], token[BODY_LENGTH:]
    return hmac.compare_digest(_checksum(key, body), check)


def token_hash(token: str) -> str:
    """What the store keeps and looks up (sha256 hex)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_secret(nbytes: int = 32) -> str:
    """A url-safe random secret (session cookies, CSRF tokens, submission keys)."""
    return secrets.token_urlsafe(nbytes)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def key_from_text(text: str) -> bytes:
    """The link key from the setting (hex of at least 16 bytes, else the text's UTF-8 bytes)."""
    text = text.strip()
    try:
        raw = bytes.fromhex(text)
        if len(raw) >= 16:
            return raw
    except ValueError:
        pass
    if len(text.encode("utf-8")) < 16:
        raise ValueError("the link key is shorter than 16 bytes")
    return text.encode("utf-8")


def load_key(setting: str, path: str | Path) -> bytes:
    """The link key: from the setting when given (key_from_text), else the random key kept in
    `path` (data_dir/survey_link.key), made on first use (32 bytes hex, mode 0600). Every
    process of one deployment then signs and checks links alike."""
    if setting.strip():
        return key_from_text(setting)
    path = Path(path)
    try:
        return key_from_text(path.read_text(encoding="ascii"))
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    text = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return key_from_text(path.read_text(encoding="ascii"))
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text + "\n")
    return bytes.fromhex(text)
