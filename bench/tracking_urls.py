"""Beacon's URLs plus `/bare/<token>`: a view that only answers the same 302 as a click."""
from django.conf import settings
from django.http import HttpResponse
from django.urls import path

from beacon.urls import urlpatterns as beacon_urlpatterns


def bare_redirect(request, token):
    response = HttpResponse(status=302)
    response["Location"] = settings.BENCH_TARGET_URL
    return response


# Right after the tracking endpoints, so both views cost the same URL resolution.
urlpatterns = [beacon_urlpatterns[0], path("bare/<str:token>", bare_redirect), *beacon_urlpatterns[1:]]
