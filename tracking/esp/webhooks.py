"""The ESPs' tracking webhooks, under `/anymail/` (beacon/urls.py): anymail's own views, guarded.

Who may call them: the provider only. No session, no CSRF (anymail's views are exempt, as the tracking
endpoints are): the credential is the provider's signature (Mailgun, with its webhook signing key) or
the basic auth of `ANYMAIL_WEBHOOK_SECRET` (required for Postmark, which signs nothing), checked by
anymail in constant time; a missing or wrong one is anymail's 400 and nothing is recorded.

Only the tracking webhooks of `PROVIDERS` are mounted, at anymail's paths and names
(`anymail:mailgun_tracking_webhook`): Beacon receives no inbound mail through anymail, and answering an
inbound webhook 200 would drop that mail. Around each, `_guarded` answers:

- 403 when the provider's webhook is not secured or not configured (no signing key, or basic auth
  required and no secret): anymail would accept anyone's events, or fail with a 500;
- 400 when the body is not what a provider sends (not JSON where JSON is due, nested past
  `beacon.parsers.MAX_JSON_DEPTH`, NUL or a lone surrogate, fields missing) and 413 past Django's
  `DATA_UPLOAD_MAX_MEMORY_SIZE`: anymail would fail on it with a 500, and a provider retries a 500;
- 503 (with Retry-After) when the event could not be recorded: the provider sends it again.
"""
from __future__ import annotations

import functools
import logging

from anymail import urls as anymail_urls
from anymail.exceptions import AnymailConfigurationError
from anymail.signals import AnymailTrackingEvent
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from beacon.parsers import loads
from beacon.storable import UNSTORABLE_MESSAGE, first_unstorable
from tracking.esp.events import EspEventNotRecorded, esp_event_from_anymail
from tracking.esp.record import esp_event_record

logger = logging.getLogger(__name__)

PROVIDERS = ("mailgun", "postmark")
# What anymail raises on a payload that lacks what it reads or holds what it cannot convert (a field
# missing or of another type, a time beyond what a datetime holds, JSON nested in a form field too deep).
_MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError, OSError, RecursionError)

app_name = "anymail"


def _answer(status: int, text: str) -> HttpResponse:
    response = HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


def _payload_problem(request: HttpRequest) -> str | None:
    """What makes the body unacceptable before anymail reads it, or None."""
    try:
        if request.content_type == "application/json" or not request.content_type.startswith(("multipart/", "application/x-www-form-urlencoded")):
            loads(request.body.decode("utf-8"))
            return None
        name = first_unstorable(request.POST)
    except UnicodeDecodeError:
        return "The body is not UTF-8."
    except (ValueError, MultiPartParserError) as error:
        return f"The body is not a webhook payload: {str(error)[:200]}"
    return f"“{name}” {UNSTORABLE_MESSAGE}." if name is not None else None


def _guarded(view):
    view_class = view.view_class

    @csrf_exempt
    @functools.wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method == "POST":
            if view_class.warn_if_no_basic_auth and not settings.ANYMAIL.get("WEBHOOK_SECRET"):
                logger.error("%s webhook refused: set ANYMAIL_WEBHOOK_SECRET to secure it", view_class.esp_name)
                return _answer(403, "This webhook is not secured on this server.")
            try:
                problem = _payload_problem(request)
            except RequestDataTooBig:
                return _answer(413, "The body is too large.")
            if problem is not None:
                return _answer(400, problem)
        try:
            return view(request, *args, **kwargs)
        except AnymailConfigurationError as error:
            logger.error("%s webhook refused: %s", view_class.esp_name, error)
            return _answer(403, "This webhook is not configured on this server.")
        except EspEventNotRecorded:
            response = _answer(503, "Temporarily unavailable, please try again.")
            response["Retry-After"] = "60"
            return response
        except _MALFORMED as error:
            logger.warning("%s webhook payload refused: %.200r", view_class.esp_name, error)
            return _answer(400, "The body is not a webhook payload this server can read.")

    return guarded


def anymail_tracking_received(sender, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
    """The receiver of anymail's `tracking` signal (connected in tracking.apps): translates and records.

    Whatever fails here is Beacon's to fix, not the payload's (anymail parsed it already): it becomes
    EspEventNotRecorded, a 503, so that the provider sends the event again rather than it being lost."""
    try:
        outcome = esp_event_record(esp_event_from_anymail(event, esp_name))
    except Exception as exc:
        logger.exception("%s tracking event not recorded", esp_name)
        raise EspEventNotRecorded(str(exc)) from exc
    logger.debug("%s %s event: %s", esp_name, event.event_type, outcome)


urlpatterns = [
    path(str(pattern.pattern), _guarded(pattern.callback), name=pattern.name)
    for pattern in anymail_urls.urlpatterns
    if pattern.name in {f"{provider}_tracking_webhook" for provider in PROVIDERS}
]
