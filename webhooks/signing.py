"""Standard Webhooks signatures (https://www.standardwebhooks.com): secrets and headers. No Django.

A secret is `whsec_` followed by the base64 of 24 to 64 random bytes. A message is signed as
HMAC-SHA256 of `<webhook-id>.<webhook-timestamp>.<body>` with the secret's bytes, and the signature is
sent as `v1,<base64>` in `webhook-signature`.
"""
import base64
import binascii
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
MIN_BYTES = 24
MAX_BYTES = 64
NEW_SECRET_BYTES = 32


class SecretInvalid(ValueError):
    pass


def secret_generate() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(NEW_SECRET_BYTES)).decode("ascii")


def secret_bytes(secret: str) -> bytes:
    """The key of a secret; raises SecretInvalid, with a message for the administrator, if it is not one."""
    if not isinstance(secret, str) or not secret.startswith(PREFIX):
        raise SecretInvalid(f"A secret starts with {PREFIX!r} followed by base64 (leave it out to have one made).")
    encoded = secret[len(PREFIX):]
    if len(encoded) > 4 * MAX_BYTES // 3 + 4 or not encoded.isascii():
        raise SecretInvalid(f"A secret holds {MIN_BYTES} to {MAX_BYTES} bytes.")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SecretInvalid(f"The part after {PREFIX!r} must be standard base64.") from None
    if not MIN_BYTES <= len(key) <= MAX_BYTES:
        raise SecretInvalid(f"A secret holds {MIN_BYTES} to {MAX_BYTES} bytes.")
    return key


def signed_headers(*, secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of a message: its id, its time (Unix seconds) and its signature."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }
