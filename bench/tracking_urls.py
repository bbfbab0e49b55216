"""Beacon's URLs plus the two baselines a click is compared with.

- `/bare/<token>`: the same 302 a first click gets (Location, cache and referrer headers, the browser-id
  and web-tracking cookies), made by the same function, with no token check, lookup or event;
- `/bare-location/<token>`: a 302 with a Location header only, for reference.
"""
from django.conf import settings
from django.http import HttpResponse
from django.urls import path

from beacon.urls import urlpatterns as beacon_urlpatterns
from tracking.views.base import BROWSER_COOKIE, BROWSER_COOKIE_MAX_AGE, WEB_COOKIE, WEB_COOKIE_MAX_AGE
from tracking.views.endpoints import click_redirect

BROWSER_ID = "0123456789abcdef0123456789abcdef"


def bare_redirect(request, token):
    cookies = {BROWSER_COOKIE: (BROWSER_ID, BROWSER_COOKIE_MAX_AGE), WEB_COOKIE: (token, WEB_COOKIE_MAX_AGE)}
    return click_redirect(settings.BENCH_TARGET_URL, cookies)


def bare_location_redirect(request, token):
    response = HttpResponse(status=302)
    response["Location"] = settings.BENCH_TARGET_URL
    return response


# Right after the tracking endpoints, so all views cost the same URL resolution.
urlpatterns = [
    beacon_urlpatterns[0],
    path("bare/<str:token>", bare_redirect),
    path("bare-location/<str:token>", bare_location_redirect),
    *beacon_urlpatterns[1:],
]
