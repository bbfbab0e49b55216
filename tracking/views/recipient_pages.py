"""The pages a recipient sees: the mirror page (`/m/`, the message as a web page), the unsubscribe page
(`/u/`: GET shows it, only POST opts out, RFC 8058 one-click, since mail scanners fetch every link with
GET) and web tracking's opt-out (`/w/opt-out`)."""
import logging

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from beacon.security import client_ip
from deliveries.content import ContentError
from deliveries.models import Message, TrackingMode
from deliveries.services import message_render
from deliveries.tokens import Purpose, read_token
from profiles.selectors import profile_language
from tracking import lookups, machine
from tracking.ingest.handoff import EventNotStored
from tracking.models import EventType
from tracking.services import message_opt_out
from tracking.views.base import (
    WEB_COOKIE,
    WEB_OPT_OUT_COOKIE,
    WEB_OPT_OUT_MAX_AGE,
    anonymize_ip,
    database_failure_is_503,
    known_browser_id,
    message_and_url,
    not_found,
    recipient_page,
    set_cookie,
    submit,
    unavailable,
)

logger = logging.getLogger(__name__)

# Marketer HTML on Beacon's origin: no scripts, no forms, no plugins; a unique opaque origin.
MIRROR_CSP = (
    "sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation; "
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline' https: http:; "
    "font-src https: http: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


@require_http_methods(["GET"])
@database_failure_is_503
def mirror(request: HttpRequest, token: str) -> HttpResponse:
    found = message_and_url(token, Purpose.MIRROR, (TrackingMode.MIRROR,), url_required=False)
    if found is None:
        return not_found(request)
    message, url = found
    message_row = Message.objects.select_related("profile").filter(pk=message.id).first()
    if message_row is None:
        return not_found(request)
    try:
        rendered = message_render(message=message_row)
    except ContentError:
        # The message no longer renders within the limits (its profile changed since it was sent).
        logger.warning("Mirror page of message %s cannot be rendered", message_row.pk)
        return not_found(request)
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

    return submit(
        request,
        page,
        EventType.MIRROR,
        message,
        tracked_url_id=url.id if url else None,
        browser_id=known_browser_id(request),
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
    found = message_and_url(token, Purpose.UNSUBSCRIBE, (TrackingMode.OPT_OUT,), url_required=False)
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
    return submit(
        request,
        lambda: _uncached(recipient_page(request, "tracking/unsubscribe.html", {"token": token}, language=language)),
        EventType.CLICK,
        message,
        tracked_url_id=url.id if url else None,
        machine_reason=machine.request_machine_reason(request.META, request.method, user_agent),
    )


def _web_visitor_language(request: HttpRequest) -> str | None:
    """The language of the profile whose tracked click this browser came from (the web cookie), if known."""
    data = read_token(request.COOKIES.get(WEB_COOKIE, ""), Purpose.CLICK)
    if data is None:
        return None
    try:
        message = lookups.message_info(data.message_id)
        return profile_language(profile_id=message.profile_id) if message is not None else None
    except DatabaseError:
        # The page must not depend on the database more than the opt-out does: the browser's language then.
        return None


@csrf_exempt
@require_http_methods(["GET", "POST"])
def web_opt_out(request: HttpRequest) -> HttpResponse:
    """GET explains and offers the choice; POST sets the opt-out cookie and forgets the click. In the
    language of the profile whose click set the web cookie, else the browser's."""
    opted_out = WEB_OPT_OUT_COOKIE in request.COOKIES
    if request.method == "POST":
        opted_out = True
    response = recipient_page(
        request, "tracking/web_opt_out.html", {"opted_out": opted_out}, language=_web_visitor_language(request)
    )
    if request.method == "POST":
        set_cookie(response, WEB_OPT_OUT_COOKIE, "1", WEB_OPT_OUT_MAX_AGE)
        response.delete_cookie(WEB_COOKIE, samesite="Lax")
    response["Cache-Control"] = "no-store"
    return response
