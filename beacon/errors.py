"""One way to say "not found": a service's `NotFound` is a 404 page in the pages and a JSON 404 in the
API, and an unknown path under `/api/` answers JSON like every other API error."""
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from beacon.exceptions import NotFound

API_PREFIX = "/api/"


class NotFoundMiddleware:
    """Turns a service's NotFound, raised in a page, into Django's 404 (DRF views answer it themselves)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        if isinstance(exception, NotFound):
            raise Http404(exception.message) from exception


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """`handler404`: JSON in the API's shape under /api/, Django's page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Not found.", "code": "not_found", "fields": {}}, status=404)
    return defaults.page_not_found(request, exception)
