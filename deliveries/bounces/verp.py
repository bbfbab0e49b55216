"""VERP: the envelope sender of each message names the message, so its bounce is matched without
trusting the bounce's body.

`BEACON_BOUNCE_ADDRESS` ``bounces@example.com`` makes message 42's return path
``bounces+<token>@example.com``, the token signed like the tracking tokens (`deliveries.tokens`,
purpose BOUNCE: the first key signs, every key verifies). The token's alphabet has no ``+``, so the
token is what follows the last ``+`` of the local part, whatever the configured local part holds.
"""
from email.utils import parseaddr

from django.conf import settings

from deliveries.tokens import Purpose, make_token, read_token

# An address longer than SMTP allows (RFC 5321: 64 + 1 + 255) is not one Beacon wrote.
_MAX_ADDRESS_LENGTH = 320


def verp_address(message_id: int, bounce_address: str | None = None) -> str:
    """The return path for one message, built on `bounce_address` (default: BEACON_BOUNCE_ADDRESS)."""
    bounce_address = bounce_address if bounce_address is not None else settings.BEACON_BOUNCE_ADDRESS
    local, at, domain = bounce_address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an email address: {bounce_address!r}")
    return f"{local}+{make_token(Purpose.BOUNCE, message_id)}@{domain}"


def verp_message_id(address: str) -> int | None:
    """The message id a VERP address carries, or None if it carries no token that verifies.

    Accepts what bounces write: a bare address, ``<address>``, ``Name <address>`` or a DSN's
    ``rfc822; address``. Never raises.
    """
    if not isinstance(address, str) or len(address) > _MAX_ADDRESS_LENGTH:
        return None
    value = address.strip()
    if value[:7].lower() == "rfc822;":
        value = value[7:].strip()
    value = parseaddr(value)[1] or value.strip("<>")
    local, at, _domain = value.rpartition("@")
    if not at or "+" not in local:
        return None
    data = read_token(local.rpartition("+")[2], Purpose.BOUNCE)
    return data.message_id if data else None
