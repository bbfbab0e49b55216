"""Signed tracking tokens: short, URL-safe, verified without the database.

A token is base64url (no padding) of::

    key id (1 byte) | purpose (1 byte) | varint message id | varint tracked URL id | HMAC-SHA256[:10]

The HMAC covers purpose and both ids, keyed by one of ``settings.BEACON_SIGNING_KEYS``: the first key
signs, all keys verify, so keys rotate without breaking links already delivered. The key id (the first
byte of the key's SHA-256) picks the key to try. 80 bits of MAC make forgery impractical while a click
token stays around 22 characters.
"""
import base64
import binascii
import hashlib
import hmac
import re
from enum import IntEnum
from functools import lru_cache
from typing import NamedTuple

from django.conf import settings

MAC_LENGTH = 10
MAX_TOKEN_LENGTH = 64
TOKEN_PATTERN = "[A-Za-z0-9_-]{1,64}"
_TOKEN_RE = re.compile(TOKEN_PATTERN)
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# The bits of the last character that encode no data, by length modulo 4 (2: 4 bits, 3: 2 bits). The
# decoder ignores them, so without this check each token verifies in several spellings; only the one
# make_token writes (those bits zero) does.
_UNUSED_LAST_BITS = {2: 0b1111, 3: 0b11}


class Purpose(IntEnum):
    CLICK = 1
    OPEN = 2
    MIRROR = 3
    UNSUBSCRIBE = 4
    # The VERP return path of a message (deliveries.bounces.verp).
    BOUNCE = 5
    # The reference an ESP echoes in its webhooks (deliveries.esp_reference).
    ESP_REFERENCE = 6


class TokenData(NamedTuple):
    purpose: Purpose
    message_id: int
    url_id: int


@lru_cache(maxsize=8)
def _keys(raw_keys: tuple[str, ...]) -> tuple[tuple[int, hmac.HMAC], ...]:
    """(key id, an HMAC already keyed) per key: copying a keyed HMAC costs half of keying a new one."""
    keys = []
    for raw in raw_keys:
        key = raw.encode()
        keys.append((hashlib.sha256(key).digest()[0], hmac.new(key, digestmod=hashlib.sha256)))
    return tuple(keys)


def _signing_keys() -> tuple[tuple[int, hmac.HMAC], ...]:
    return _keys(tuple(settings.BEACON_SIGNING_KEYS))


def _mac(keyed: hmac.HMAC, payload: bytes) -> bytes:
    mac = keyed.copy()
    mac.update(payload)
    return mac.digest()[:MAC_LENGTH]


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("ids are non-negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while offset < len(data) and shift <= 63:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
    raise ValueError("truncated varint")


def make_token(purpose: Purpose, message_id: int, url_id: int = 0) -> str:
    key_id, keyed = _signing_keys()[0]
    payload = bytes([purpose]) + _varint(message_id) + _varint(url_id)
    return base64.urlsafe_b64encode(bytes([key_id]) + payload + _mac(keyed, payload)).rstrip(b"=").decode()


def read_token(token: str, purpose: Purpose) -> TokenData | None:
    """The ids a token carries if it verifies for this purpose, else None. Never raises."""
    # The strict alphabet check matters: the base64 decoder silently skips foreign characters.
    if not token or not _TOKEN_RE.fullmatch(token):
        return None
    if _ALPHABET.index(token[-1]) & _UNUSED_LAST_BITS.get(len(token) % 4, 0):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) < 4 + MAC_LENGTH:
        return None
    payload, mac = raw[1:-MAC_LENGTH], raw[-MAC_LENGTH:]
    if payload[0] != purpose:
        return None
    for key_id, keyed in _signing_keys():
        if key_id == raw[0] and hmac.compare_digest(_mac(keyed, payload), mac):
            break
    else:
        return None
    try:
        message_id, offset = _read_varint(payload, 1)
        url_id, offset = _read_varint(payload, offset)
    except ValueError:
        return None
    if offset != len(payload):
        return None
    return TokenData(purpose, message_id, url_id)


def tracking_url(path_prefix: str, token: str, *, public_url: str = "") -> str:
    """Absolute public URL of a tracking endpoint, e.g. ``tracking_url("r", token)``.

    The send path passes `public_url`, read once per delivery: a settings lookup costs several times
    the rest of this, and a message has a dozen links.
    """
    return f"{public_url or settings.BEACON_PUBLIC_URL}/{path_prefix}/{token}"
