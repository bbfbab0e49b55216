"""What a database text column can store, and the request gate that refuses the rest with a 400.

PostgreSQL refuses NUL in text (psycopg2 raises before the query is sent) and a lone surrogate is not
UTF-8: either one reaching a query or a save was a 500. One rule, here, for every input: the query string
of every request (`UnstorableInputMiddleware`), and JSON bodies (`beacon.parsers`). Form bodies are the
forms' and serializers' own: Django's and DRF's text fields refuse NUL as a field error, shown on the
form, and a form body's invalid UTF-8 is decoded as U+FFFD.
"""
import re

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from beacon.errors import API_PREFIX
from beacon.security import HOT_PATH_PREFIXES

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_MESSAGE = "holds a NUL character or a lone surrogate, which Beacon cannot store"


def storable(value: str) -> str:
    """The value with what a database cannot store replaced by U+FFFD."""
    return UNSTORABLE.sub("\ufffd", value)


def is_storable(value: str) -> bool:
    return UNSTORABLE.search(value) is None


def first_unstorable(params) -> str | None:
    """The name of the first parameter whose name or a value cannot be stored."""
    for name, values in params.lists():
        if not is_storable(name) or not all(is_storable(value) for value in values if isinstance(value, str)):
            return storable(name)
    return None


class UnstorableInputMiddleware:
    """Answers 400, naming the parameter, when a query parameter holds NUL: every search box and filter,
    the API's, the pages' and the admin's, gets the same clear refusal.

    Query strings are decoded with invalid UTF-8 replaced, so only NUL (`%00`) arrives that way; the
    raw query string is searched for it first, so a request without one costs a substring search.
    The click and open endpoints are skipped: their token is in the path and they read no parameter.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(HOT_PATH_PREFIXES):
            query = request.META.get("QUERY_STRING", "")
            name = first_unstorable(request.GET) if "%00" in query or "\x00" in query else None
            if name is not None:
                return _refusal(request, name)
        return self.get_response(request)


def _refusal(request: HttpRequest, name: str) -> HttpResponse:
    message = f"“{name}” {UNSTORABLE_MESSAGE}."
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse({"detail": message, "code": "invalid", "fields": {name: [message]}}, status=400)
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
