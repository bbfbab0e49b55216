"""What every public tracking handler uses: the answers (a recipient's page in their language, the plain
404, the 503 to retry), the request's anonymized address and privacy signals, the cookies, the token's
verified message and link, and the hand-off of the event.

No login, no CSRF, no session: the signed token is the credential. Anything that does not verify or
names nothing gets the same plain 404 page, never a redirect. The handlers build no model instances
and read only through the per-process caches of ``tracking.lookups``; ``tracking.ingest.handoff`` takes
the event.
"""
import functools
import ipaddress
import logging
import socket
from collections.abc import Callable
from http.cookies import Morsel

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.cache import patch_vary_headers

from beacon.security import client_ip
from deliveries.tokens import Purpose, read_token
from tracking import lookups
from tracking.ingest.event import new_event
from tracking.ingest.handoff import EventNotStored, event_submit

logger = logging.getLogger(__name__)

BROWSER_COOKIE = "bcn_bid"
BROWSER_COOKIE_MAX_AGE = 2 * 365 * 24 * 3600
# Set on a click: ties later visits of the landing site (/w/) to the message; holds the click token.
WEB_COOKIE = "bcn_wt"
WEB_COOKIE_MAX_AGE = 30 * 24 * 3600
WEB_OPT_OUT_COOKIE = "bcn_optout"
WEB_OPT_OUT_MAX_AGE = 5 * 365 * 24 * 3600


def recipient_page(request: HttpRequest, template: str, context: dict | None = None, *, status: int = 200,
                   language: str | None = None) -> HttpResponse:
    """A page a recipient sees, in `language` (their profile's, when known) or else their browser's
    (Accept-Language), among `settings.LANGUAGES`."""
    language = language or translation.get_language_from_request(request)
    with translation.override(language):
        response = render(request, template, context, status=status)
    response["Content-Language"] = translation.get_supported_language_variant(language)
    patch_vary_headers(response, ["Accept-Language"])
    return response


def not_found(request: HttpRequest) -> HttpResponse:
    response = recipient_page(request, "tracking/not_found.html", status=404)
    response["Cache-Control"] = "no-store"
    return response


def unavailable(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("Temporarily unavailable, please try again.", status=503, content_type="text/plain")
    response["Retry-After"] = "5"
    return response


def database_failure_is_503(view):
    """A lookup the cache cannot answer while the database is down: 503 (retry), never a 500."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except DatabaseError:
            logger.warning("Database unavailable for a tracking lookup", exc_info=True)
            return unavailable(request)

    return wrapper


def anonymize_ip(raw: str) -> str | None:
    """The address with its host part zeroed: last octet of IPv4, last 80 bits of IPv6."""
    try:
        socket.inet_pton(socket.AF_INET, raw)
        return raw.rpartition(".")[0] + ".0"
    except OSError:
        pass
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def wants_no_tracking(request: HttpRequest) -> bool:
    """Global Privacy Control or Do Not Track: no web tracking and no cookies."""
    return request.META.get("HTTP_SEC_GPC") == "1" or request.META.get("HTTP_DNT") == "1"


def cookie_browser_id(request: HttpRequest) -> str:
    """The browser's id from its cookie, or '' if it has none."""
    value = request.COOKIES.get(BROWSER_COOKIE, "")
    if len(value) == 32 and all(char in "0123456789abcdef" for char in value):
        return value
    return ""


def known_browser_id(request: HttpRequest) -> str:
    """The browser's id if it already has one; only a click hands out new ones."""
    return "" if wants_no_tracking(request) else cookie_browser_id(request)


class _TrackingCookie(Morsel):
    """A cookie whose attributes are fixed when it is made, and formatted then, once.

    The standard Morsel validates each attribute as it is set and formats them all again on output,
    which costs a click more CPU than verifying its token; the output is the same.
    """

    def __init__(self, name: str, value: str, max_age: int) -> None:
        super().__init__()
        secure = settings.BEACON_PUBLIC_URL.startswith("https://")
        # dict.update skips Morsel's per-key validation: these keys are Morsel's own.
        dict.update(self, {"max-age": max_age, "path": "/", "httponly": True, "samesite": "Lax", "secure": secure})
        # Names and values are hex, base64url or digits: nothing to quote.
        self._key = name
        self._value = self._coded_value = value
        self._text = f"{name}={value}; HttpOnly; Max-Age={max_age}; Path=/; SameSite=Lax" + ("; Secure" if secure else "")

    def OutputString(self, attrs=None) -> str:
        return self._text


def set_cookie(response: HttpResponse, name: str, value: str, max_age: int) -> None:
    # Max-Age without Expires: what browsers use, and it spares formatting a date on every click.
    dict.__setitem__(response.cookies, name, _TrackingCookie(name, value, max_age))


def submit(request: HttpRequest, respond: Callable[[], HttpResponse], event_type: str, message, *,
            ip: str | None = None, **fields) -> HttpResponse:
    """Hands on one event of this message, with what every event takes from the request (the anonymized
    `ip` unless given), and answers `respond()` (made while Redis takes the event), or 503 if the event
    could not be stored."""
    try:
        return event_submit(
            new_event(
                type=event_type,
                delivery_id=message.delivery_id,
                message_id=message.id,
                profile_id=message.event_profile_id,
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
                ip=anonymize_ip(client_ip(request)) if ip is None else ip,
                **fields,
            ),
            respond,
        )
    except EventNotStored:
        return unavailable(request)


def message_and_url(token: str, purpose: Purpose, modes: tuple[str, ...], *, url_required: bool):
    """The verified message and tracked URL of a token, or None; both must be of the same delivery."""
    data = read_token(token, purpose)
    if data is None:
        return None
    message = lookups.message_info(data.message_id)
    if message is None:
        return None
    if not data.url_id:
        return None if url_required else (message, None)
    url = lookups.tracked_url_info(data.url_id)
    if url is None or url.delivery_id != message.delivery_id or url.mode not in modes:
        return None
    return message, url
