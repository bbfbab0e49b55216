"""The Content-Security-Policy of Beacon's pages, and the client's address as every part of Beacon reads it.

Django 5.2 has no CSP support of its own; this middleware is a dozen lines, where the django-csp package
would bring its own settings vocabulary for one fixed header.
"""
import functools

from django.conf import settings
from django.http import HttpRequest, HttpResponse

CSP_HEADER = "Content-Security-Policy"
# The click and open endpoints answer a redirect or a GIF, never a page: they are the hot path and get
# no header work at all (the rest of tracking's pages, /u/ /m/ /w/ and their 404, are pages like any).
HOT_PATH_PREFIXES = ("/r/", "/o/")


def client_ip(request: HttpRequest) -> str:
    """The client's address: behind a trusted reverse proxy (BEACON_TRUST_X_FORWARDED_FOR) the last
    X-Forwarded-For entry, the one the proxy added; else the peer's address."""
    if settings.BEACON_TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.rsplit(",", 1)[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


# The longest username axes records a failed login under: its table's column holds 255 characters, and
# no account has a longer name (Django's usernames hold 150), so cutting changes whom nothing is counted for.
LOGIN_USERNAME_LENGTH = 150


def login_username(request: HttpRequest, credentials: dict | None = None) -> str | None:
    """The username a login attempt is counted under (`AXES_USERNAME_CALLABLE`), cut to what the table holds:
    a 10,000-character name is a failed login, not a database error."""
    source = credentials if credentials else getattr(request, "data", request.POST)
    username = source.get(settings.AXES_USERNAME_FORM_FIELD)
    return username[:LOGIN_USERNAME_LENGTH] if isinstance(username, str) else username


class ContentSecurityPolicyMiddleware:
    """Adds `settings.BEACON_CSP` to every HTML response that has no policy of its own.

    A view that needs another policy (the sandboxed mirror, preview and hot-clicks documents, stricter;
    Swagger UI, see `csp`) sets the header itself, and it is kept as it is.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.policy = settings.BEACON_CSP

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # A redirect shows nothing: it exits first, so a click's 302 and the benchmark's bare 302
        # (bench/tracking_urls.py) cost the middleware the same single comparison.
        if response.status_code // 100 == 3 or request.path_info.startswith(HOT_PATH_PREFIXES) or CSP_HEADER in response:
            return response
        if response.get("Content-Type", "").startswith("text/html"):
            response[CSP_HEADER] = self.policy
        return response


def csp(policy: str):
    """A view decorator giving the view's responses `policy` instead of Beacon's default."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            response = view(request, *args, **kwargs)
            response[CSP_HEADER] = policy
            return response

        return wrapper

    return decorator


# Swagger UI (drf-spectacular's split view: its start-up script is a file, not inline) sets style
# attributes from its scripts and has one inline <style> block: styles only, and only on /api/docs/,
# may be inline. Scripts stay 'self'.
SWAGGER_UI_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'self'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
