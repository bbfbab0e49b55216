"""The API's token authentication, with failed attempts counted per client address.

django-axes counts failed sign-ins (`/login/`, the admin); a guessed API token never reaches it. Each
failed token authentication is counted here, in the cache, per client address (`beacon.security.client_ip`):
the first failure opens a window of BEACON_LOGIN_LOCKOUT_MINUTES (`AXES_COOLOFF_TIME`), and the
BEACON_LOGIN_FAILURE_LIMIT-th (`AXES_FAILURE_LIMIT`) within it locks the address out for as long: every
token it sends, good or not, is answered 429 with `Retry-After`. A good token does not clear the count, or
a client holding one could interleave it with its guesses.

Session authentication needs no count of its own: a session comes only from a sign-in, which axes counts.
HTTP Basic authentication is not enabled.
"""
import logging
import math
import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.authtoken.models import Token

from beacon.security import client_ip

logger = logging.getLogger(__name__)

_FAILURES_KEY = "beacon:api-token-failures:{}"
_LOCKED_UNTIL_KEY = "beacon:api-token-locked-until:{}"
TOKEN_KEY_LENGTH = Token._meta.get_field("key").max_length
LOCKED_OUT_MESSAGE = "Too many failed token authentications from this address."


def _lockout_length() -> int:
    return max(math.ceil(settings.AXES_COOLOFF_TIME.total_seconds()), 1)


def api_token_lockout_seconds(*, address: str) -> int:
    """Seconds until `address` may send a token again; 0 when it may now."""
    locked_until = cache.get(_LOCKED_UNTIL_KEY.format(address))
    return max(math.ceil(locked_until - time.time()), 0) if locked_until else 0


def api_token_failure_record(*, address: str) -> int:
    """Counts a failed token authentication from `address`; the seconds it is now locked out for (0: none)."""
    key = _FAILURES_KEY.format(address)
    length = _lockout_length()
    cache.add(key, 0, timeout=length)
    try:
        failures = cache.incr(key)
    except ValueError:  # the window closed between the two calls: this failure opens a new one
        cache.set(key, 1, timeout=length)
        failures = 1
    if failures < settings.AXES_FAILURE_LIMIT:
        return 0
    cache.set(_LOCKED_UNTIL_KEY.format(address), time.time() + length, timeout=length)
    cache.delete(key)
    return length


def api_token_failures_clear(*, address: str) -> None:
    """Forgets the failures and any lock-out of `address`."""
    cache.delete_many([_FAILURES_KEY.format(address), _LOCKED_UNTIL_KEY.format(address)])


def _seconds_or_zero(count: Callable[..., int], address: str) -> int:
    # With the cache unreachable, tokens are checked uncounted rather than every API call failing: a token
    # is 160 random bits, the count is a second line of defence.
    try:
        return count(address=address)
    except Exception:
        logger.warning("Failed API token authentications cannot be counted: the cache is unreachable.", exc_info=True)
        return 0


class ThrottledTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>`, refused with 429 for an address with too many failures (above)."""

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None  # no token offered: nothing to count
        address = client_ip(request)
        wait = _seconds_or_zero(api_token_lockout_seconds, address)
        if wait:
            raise exceptions.Throttled(wait=wait, detail=LOCKED_OUT_MESSAGE)
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            wait = _seconds_or_zero(api_token_failure_record, address)
            if wait:
                raise exceptions.Throttled(wait=wait, detail=LOCKED_OUT_MESSAGE)
            raise

    def authenticate_credentials(self, key: str):
        # A key is 40 letters and digits: anything else is refused before the query (PostgreSQL refuses a NUL).
        if not (key.isascii() and key.isalnum() and len(key) <= TOKEN_KEY_LENGTH):
            raise exceptions.AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(key)
