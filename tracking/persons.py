"""Who a click is: the browser id that tells persons apart (reporting counts a person per browser id).

A browser that keeps cookies is its cookie's id. A click without one gets a new id, and the cookie to
keep it; a client that never keeps it (a script replaying a link) would be a new person on every click.
So the id a click without a cookie gets is not random: it is a keyed hash of the message, the client
(anonymized IP and user agent) and the window of COOKIELESS_PERSON_WINDOW it falls in. The same client
clicking the same message again within the window, with or without keeping the cookie, is the same
person; a forward clicked from another network or another browser is another. The hash is keyed by a
secret, so an id says nothing of the IP it came from, and is never linkable across windows.
"""
import functools
import hashlib
import hmac

from django.conf import settings

COOKIELESS_PERSON_WINDOW = 3600  # seconds
_SALT = b"beacon.tracking.persons.cookieless"


@functools.lru_cache(maxsize=4)
def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _SALT, hashlib.sha256).digest()


def cookieless_browser_id(*, message_id: int, ip: str | None, user_agent: str, at: float) -> str:
    """The browser id (32 hex digits) of a click without a browser cookie, logged at Unix time `at`."""
    window = int(at // COOKIELESS_PERSON_WINDOW)
    client = f"{message_id}\x00{window}\x00{ip or ''}\x00{user_agent}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(client, key=_key(settings.SECRET_KEY), digest_size=16).hexdigest()
