"""The public tracking endpoints: verify the token, hand the event on, answer.

No login, no CSRF, no session: the signed token is the credential. Anything that does not verify or
names nothing gets the same plain 404 page, never a redirect. The handlers build no model instances
and read only through the per-process caches of ``tracking.lookups``; ``tracking.ingest.handoff`` takes
the event. Only ``POST /u/`` changes state (RFC 8058 one-click): mail scanners fetch every link with GET.

Also one page of the marketer's workspace, signed in like the others: a profile's Tracking tab
(`profile_tracking`), here because it reads tracking's events and tracking may import profiles, not the
reverse.
"""
import functools
import ipaddress
import json
import logging
import socket
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from http.cookies import Morsel

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.core.paginator import Paginator
from django.shortcuts import render
from django.utils import timezone, translation
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from accounts.decorators import action_required
from accounts.roles import READ_PERSONAL_DATA
from beacon.security import client_ip
from deliveries.models import Message, TrackingMode
from deliveries.services import message_render
from deliveries.tokens import Purpose, read_token
from profiles.selectors import profile_get, profile_language
from tracking import lookups, machine, persons, selectors
from tracking.ingest.event import new_event
from tracking.ingest.handoff import EventNotStored, event_submit
from tracking.models import EventType
from tracking.services import message_opt_out

logger = logging.getLogger(__name__)

# A 1x1 transparent GIF.
PIXEL_GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
BROWSER_COOKIE = "bcn_bid"
BROWSER_COOKIE_MAX_AGE = 2 * 365 * 24 * 3600
# Set on a click: ties later visits of the landing site (/w/) to the message; holds the click token.
WEB_COOKIE = "bcn_wt"
WEB_COOKIE_MAX_AGE = 30 * 24 * 3600
WEB_OPT_OUT_COOKIE = "bcn_optout"
WEB_OPT_OUT_MAX_AGE = 5 * 365 * 24 * 3600
CENT = Decimal("0.01")


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


def _cookie_browser_id(request: HttpRequest) -> str:
    """The browser's id from its cookie, or '' if it has none."""
    value = request.COOKIES.get(BROWSER_COOKIE, "")
    if len(value) == 32 and all(char in "0123456789abcdef" for char in value):
        return value
    return ""


def _known_browser_id(request: HttpRequest) -> str:
    """The browser's id if it already has one; only a click hands out new ones."""
    return "" if wants_no_tracking(request) else _cookie_browser_id(request)


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


def _set_cookie(response: HttpResponse, name: str, value: str, max_age: int) -> None:
    # Max-Age without Expires: what browsers use, and it spares formatting a date on every click.
    dict.__setitem__(response.cookies, name, _TrackingCookie(name, value, max_age))


def click_redirect(target: str, cookies: dict[str, tuple[str, int]]) -> HttpResponse:
    """The 302 a click answers: to `target`, uncacheable, no referrer, with these cookies (value, max age)."""
    response = HttpResponse(status=302)
    response["Location"] = target
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    for name, (value, max_age) in cookies.items():
        _set_cookie(response, name, value, max_age)
    return response


def _submit(request: HttpRequest, respond: Callable[[], HttpResponse], event_type: str, message, *,
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


def _message_and_url(token: str, purpose: Purpose, modes: tuple[str, ...], *, url_required: bool):
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


@require_http_methods(["GET", "HEAD"])
@database_failure_is_503
def click(request: HttpRequest, token: str) -> HttpResponse:
    found = _message_and_url(token, Purpose.CLICK, (TrackingMode.TRACKED, TrackingMode.HONEYPOT), url_required=True)
    if found is None:
        return not_found(request)
    message, url = found
    target = lookups.redirect_target(message, url)
    if target is None:
        return not_found(request)
    user_agent = request.META.get("HTTP_USER_AGENT", "")
    ip = anonymize_ip(client_ip(request))
    now = timezone.now()
    private = wants_no_tracking(request)
    browser_id = "" if private else _cookie_browser_id(request)
    new_browser = not private and not browser_id
    if new_browser:
        browser_id = persons.cookieless_browser_id(message_id=message.id, ip=ip, user_agent=user_agent, at=now.timestamp())
    reason = machine.click_machine_reason(
        request.META,
        request.method,
        user_agent,
        sent_at=message.sent_at,
        now=now,
        honeypot=url.mode == TrackingMode.HONEYPOT,
    )
    cookies = {}
    if not private and not reason:
        if new_browser:
            cookies[BROWSER_COOKIE] = (browser_id, BROWSER_COOKIE_MAX_AGE)
        if WEB_OPT_OUT_COOKIE not in request.COOKIES:
            cookies[WEB_COOKIE] = (token, WEB_COOKIE_MAX_AGE)
    return _submit(
        request,
        lambda: click_redirect(target, cookies),
        EventType.CLICK,
        message,
        ip=ip,
        tracked_url_id=url.id,
        browser_id=browser_id,
        machine_reason=reason,
    )


def _pixel() -> HttpResponse:
    response = HttpResponse(PIXEL_GIF, content_type="image/gif")
    response["Cache-Control"] = "no-store, no-cache, must-revalidate, max-age=0"
    response["Pragma"] = "no-cache"
    return response


@require_http_methods(["GET", "HEAD"])
@database_failure_is_503
def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    data = read_token(token, Purpose.OPEN)
    message = lookups.message_info(data.message_id) if data is not None else None
    if message is None:
        return not_found(request)
    user_agent = request.META.get("HTTP_USER_AGENT", "")
    raw_ip = client_ip(request)
    return _submit(
        request,
        _pixel,
        EventType.OPEN,
        message,
        browser_id=_known_browser_id(request),
        machine_reason=machine.open_machine_reason(request.META, request.method, user_agent, raw_ip),
    )


# Marketer HTML on Beacon's origin: no scripts, no forms, no plugins; a unique opaque origin.
MIRROR_CSP = (
    "sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation; "
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline' https: http:; "
    "font-src https: http: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


@require_http_methods(["GET"])
@database_failure_is_503
def mirror(request: HttpRequest, token: str) -> HttpResponse:
    found = _message_and_url(token, Purpose.MIRROR, (TrackingMode.MIRROR,), url_required=False)
    if found is None:
        return not_found(request)
    message, url = found
    message_row = Message.objects.select_related("profile").filter(pk=message.id).first()
    if message_row is None:
        return not_found(request)
    rendered = message_render(message=message_row)
    user_agent = request.META.get("HTTP_USER_AGENT", "")

    def page() -> HttpResponse:
        if rendered.html:
            response = HttpResponse(rendered.html, content_type="text/html; charset=utf-8")
        else:
            response = render(request, "tracking/mirror_text.html", {"subject": rendered.subject, "text": rendered.text})
        response["Content-Security-Policy"] = MIRROR_CSP
        response["X-Content-Type-Options"] = "nosniff"
        response["Referrer-Policy"] = "no-referrer"
        response["Cache-Control"] = "private, no-store"
        return response

    return _submit(
        request,
        page,
        EventType.MIRROR,
        message,
        tracked_url_id=url.id if url else None,
        browser_id=_known_browser_id(request),
        machine_reason=machine.request_machine_reason(request.META, request.method, user_agent),
    )


def _uncached(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


@csrf_exempt
@require_http_methods(["GET", "POST"])
@database_failure_is_503
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows the page (scanners fetch links: it changes nothing); POST opts out (RFC 8058)."""
    found = _message_and_url(token, Purpose.UNSUBSCRIBE, (TrackingMode.OPT_OUT,), url_required=False)
    if found is None:
        return not_found(request)
    message, url = found
    user_agent = request.META.get("HTTP_USER_AGENT", "")
    try:
        language = profile_language(profile_id=message.profile_id)
    except DatabaseError:
        # The page must not depend on the database more than the opt-out does: the browser's language then.
        language = None
    if request.method == "POST":
        try:
            message_opt_out(
                message_id=message.id,
                tracked_url_id=url.id if url else None,
                user_agent=user_agent,
                ip=anonymize_ip(client_ip(request)),
            )
        except EventNotStored:
            return unavailable(request)
        return _uncached(recipient_page(request, "tracking/unsubscribed.html", language=language))
    return _submit(
        request,
        lambda: _uncached(recipient_page(request, "tracking/unsubscribe.html", {"token": token}, language=language)),
        EventType.CLICK,
        message,
        tracked_url_id=url.id if url else None,
        machine_reason=machine.request_machine_reason(request.META, request.method, user_agent),
    )


# --- Web tracking (/w/) ---


@require_http_methods(["GET"])
def web_tag(request: HttpRequest) -> HttpResponse:
    """The JavaScript tag for landing pages; see templates/tracking/web_tag.js for its use."""
    response = render(
        request,
        "tracking/web_tag.js",
        {"base_url": settings.BEACON_PUBLIC_URL, "base_url_json": json.dumps(settings.BEACON_PUBLIC_URL)},
        content_type="text/javascript",
    )
    response["Cache-Control"] = "public, max-age=3600"
    return response


def web_amount(raw: str) -> str | None:
    """The transaction amount of `?amount=` (None: a page visit). Raises ValueError unless it is a number
    from 0 to BEACON_WEB_MAX_AMOUNT: a negative or absurd amount would skew every revenue figure."""
    if not raw:
        return None
    try:
        amount = Decimal(raw)
    except InvalidOperation:
        raise ValueError("amount is not a number") from None
    if not amount.is_finite() or not 0 <= amount <= settings.BEACON_WEB_MAX_AMOUNT:
        raise ValueError(f"amount must be a number from 0 to {settings.BEACON_WEB_MAX_AMOUNT}")
    return str(amount.copy_abs().quantize(CENT))  # copy_abs: "-0" is 0.00


@require_http_methods(["GET"])
@database_failure_is_503
def web_pixel(request: HttpRequest) -> HttpResponse:
    """A page visit (or, with `amount`, a transaction) of a visitor who came from a tracked click."""
    try:
        amount = web_amount(request.GET.get("amount", ""))
    except ValueError as error:
        return HttpResponse(str(error), status=400, content_type="text/plain; charset=utf-8")
    if wants_no_tracking(request) or WEB_OPT_OUT_COOKIE in request.COOKIES:
        return _pixel()
    data = read_token(request.COOKIES.get(WEB_COOKIE, ""), Purpose.CLICK)
    message = lookups.message_info(data.message_id) if data is not None else None
    if message is None:
        return _pixel()
    page_url = request.GET.get("url", "") or request.META.get("HTTP_REFERER", "")
    user_agent = request.META.get("HTTP_USER_AGENT", "")
    return _submit(
        request,
        _pixel,
        EventType.WEB_PAGE,
        message,
        tracked_url_id=data.url_id or None,
        browser_id=_known_browser_id(request),
        page_url=page_url if lookups.is_safe_target(page_url) else "",
        amount=amount,
        machine_reason=machine.request_machine_reason(request.META, request.method, user_agent),
    )


@csrf_exempt
@require_http_methods(["GET", "POST"])
def web_opt_out(request: HttpRequest) -> HttpResponse:
    """GET explains and offers the choice; POST sets the opt-out cookie and forgets the click."""
    opted_out = WEB_OPT_OUT_COOKIE in request.COOKIES
    if request.method == "POST":
        opted_out = True
    response = recipient_page(request, "tracking/web_opt_out.html", {"opted_out": opted_out})
    if request.method == "POST":
        _set_cookie(response, WEB_OPT_OUT_COOKIE, "1", WEB_OPT_OUT_MAX_AGE)
        response.delete_cookie(WEB_COOKIE, samesite="Lax")
    response["Cache-Control"] = "no-store"
    return response


PROFILE_TRACKING_PAGE_SIZE = 50
# The sort keys of the Tracking tab's columns, each with its reverse.
PROFILE_TRACKING_SORTS = (("logged_at", "Date and time"), ("type", "Type"), ("delivery", "Delivery"))


@action_required(READ_PERSONAL_DATA)
def profile_tracking(request: HttpRequest, profile_id: int) -> HttpResponse:
    """A profile's Tracking tab: every event of that person in the deliveries that still exist, with the
    link as that person saw it; filtered by type, sorted by any column."""
    profile = profile_get(profile_id=profile_id)
    event_type = request.GET.get("type", "")
    if event_type not in EventType.values:
        event_type = ""
    ordering = request.GET.get("sort", "-logged_at")
    if ordering not in selectors.PROFILE_TRACKING_ORDERINGS:
        ordering = "-logged_at"
    events = selectors.profile_tracking(profile_id=profile.pk, types=[event_type] if event_type else None, ordering=ordering)
    page = Paginator(events, PROFILE_TRACKING_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {"event": event, "label": selectors.event_label(event, profile), "url": selectors.event_url(event, profile)}
        for event in page.object_list
    ]
    sorts = [
        {"key": key, "title": title, "sorted": ordering.lstrip("-") == key, "descending": ordering == f"-{key}",
         "query": urlencode({"sort": key if ordering == f"-{key}" else f"-{key}", **({"type": event_type} if event_type else {})})}
        for key, title in PROFILE_TRACKING_SORTS
    ]
    filters = {key: value for key, value in (("type", event_type), ("sort", ordering)) if value}
    return render(request, "tracking/profile_tracking.html", {
        "profile": profile,
        "page": page,
        "rows": rows,
        "event_type": event_type,
        "event_types": EventType.choices,
        "ordering": ordering,
        "sorts": sorts,
        "pager_query": "&" + urlencode(filters),
    })
