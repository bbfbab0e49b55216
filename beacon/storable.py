"""What a database text column can store, and the request gate that refuses the rest with a 400.

PostgreSQL refuses NUL in text (psycopg2 raises before the query is sent) and a lone surrogate is not
UTF-8: either one reaching a query or a save was a 500. One rule, here, for every input: the query string
of every request (`UnstorableInputMiddleware`), and JSON bodies (`beacon.parsers`). The same middleware
answers 400 when a number past 64 bits reaches SQLite (PostgreSQL's lookups find nothing instead), and
searches longer than what they search find nothing without a query (`fits_in`). Form bodies are the
forms' and serializers' own: Django's and DRF's text fields refuse NUL as a field error, shown on the
form, and a form body's invalid UTF-8 is decoded as U+FFFD.
"""
import logging
import re

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from beacon.errors import API_PREFIX
from beacon.security import HOT_PATH_PREFIXES

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_MESSAGE = "holds a NUL character or a lone surrogate, which Beacon cannot store"
OUT_OF_RANGE_MESSAGE = "A number in the request is out of range: Beacon's ids and counts fit in 64 bits."

logger = logging.getLogger(__name__)


def storable(value: str) -> str:
    """The value with what a database cannot store replaced by U+FFFD."""
    return UNSTORABLE.sub("\ufffd", value)


def is_storable(value: str) -> bool:
    return UNSTORABLE.search(value) is None


def fits_in(model, term: str, *field_names: str) -> bool:
    """Whether `term` is no longer than the longest of these text columns, so that one of them could
    contain it. A search past that finds nothing, and is answered so without a query: SQLite refuses a
    LIKE pattern past 50,000 bytes outright."""
    return any(len(term) <= model._meta.get_field(name).max_length for name in field_names)


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
                return _refusal(request, f"“{name}” {UNSTORABLE_MESSAGE}.", name)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        # SQLite's driver cannot bind an integer past 64 bits: an id or filter no row can match.
        if isinstance(exception, OverflowError):
            logger.warning("%s %s: %s", request.method, request.path_info, exception)
            return _refusal(request, OUT_OF_RANGE_MESSAGE)
        return None


def _refusal(request: HttpRequest, message: str, name: str | None = None) -> HttpResponse:
    if request.path_info.startswith(API_PREFIX):
        fields = {name: [message]} if name is not None else {}
        return JsonResponse({"detail": message, "code": "invalid", "fields": fields}, status=400)
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
