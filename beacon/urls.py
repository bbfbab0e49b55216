from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from beacon.security import SWAGGER_UI_CSP, csp

handler404 = "beacon.errors.page_not_found"

urlpatterns = [
    # First: the public tracking endpoints are the hot path, and URL resolution tries patterns in order.
    path("", include("tracking.urls")),
    path("admin/", admin.site.urls),
    # The ESPs' tracking webhooks (django-anymail's views, guarded): tracking/esp/webhooks.py.
    path("anymail/", include("tracking.esp.webhooks")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", csp(SWAGGER_UI_CSP)(SpectacularSwaggerSplitView.as_view(url_name="api-schema")), name="api-docs"),
    path("api/", include("accounts.api_urls")),
    path("api/", include("profiles.api_urls")),
    path("api/", include("deliveries.api_urls")),
    path("api/", include("tracking.api_urls")),
    path("api/", include("audiences.api_urls")),
    path("api/", include("reporting.api_urls")),
    path("api/", include("webhooks.api_urls")),
    # Before the pages' catch-all reporting routes.
    path("", include("accounts.urls")),
    path("", include("deliveries.urls")),
    path("", include("profiles.urls")),
    path("", include("webhooks.urls")),
    path("", include("audiences.urls")),
    path("", include("reporting.urls")),
]
