"""The endpoints a mail client or a landing page calls: the click redirect (`/r/`), the open pixel
(`/o/`), and web tracking's tag and pixel (`/w/tag.js`, `/w/p.gif`). The click and the open are the hot
paths: each verifies its token, reads the cached lookups, hands the event on and answers."""
import json
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from beacon.security import client_ip
from deliveries.models import TrackingMode
from deliveries.tokens import Purpose, read_token
from tracking import lookups, machine, persons
from tracking.models import EventType
from tracking.views.base import (
    BROWSER_COOKIE,
    BROWSER_COOKIE_MAX_AGE,
    WEB_COOKIE,
    WEB_COOKIE_MAX_AGE,
    WEB_OPT_OUT_COOKIE,
    anonymize_ip,
    cookie_browser_id,
    database_failure_is_503,
    known_browser_id,
    message_and_url,
    not_found,
    set_cookie,
    submit,
    wants_no_tracking,
)

# A 1x1 transparent GIF.
PIXEL_GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
CENT = Decimal("0.01")


def click_redirect(target: str, cookies: dict[str, tuple[str, int]]) -> HttpResponse:
    """The 302 a click answers: to `target`, uncacheable, no referrer, with these cookies (value, max age)."""
    response = HttpResponse(status=302)
    response["Location"] = target
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    for name, (value, max_age) in cookies.items():
        set_cookie(response, name, value, max_age)
    return response


@require_http_methods(["GET", "HEAD"])
@database_failure_is_503
def click(request: HttpRequest, token: str) -> HttpResponse:
    found = message_and_url(token, Purpose.CLICK, (TrackingMode.TRACKED, TrackingMode.HONEYPOT), url_required=True)
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
    browser_id = "" if private else cookie_browser_id(request)
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
    return submit(
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
    return submit(
        request,
        _pixel,
        EventType.OPEN,
        message,
        browser_id=known_browser_id(request),
        machine_reason=machine.open_machine_reason(request.META, request.method, user_agent, raw_ip),
    )


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
    return submit(
        request,
        _pixel,
        EventType.WEB_PAGE,
        message,
        tracked_url_id=data.url_id or None,
        browser_id=known_browser_id(request),
        page_url=page_url if lookups.is_safe_target(page_url) else "",
        amount=amount,
        machine_reason=machine.request_machine_reason(request.META, request.method, user_agent),
    )
