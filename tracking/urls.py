from django.urls import path

from tracking.views import endpoints, erasure, profile_tracking, recipient_pages

app_name = "tracking"

urlpatterns = [
    path("r/<str:token>", endpoints.click, name="click"),
    path("o/<str:token>", endpoints.open_pixel, name="open"),
    path("m/<str:token>", recipient_pages.mirror, name="mirror"),
    path("u/<str:token>", recipient_pages.unsubscribe, name="unsubscribe"),
    path("w/tag.js", endpoints.web_tag, name="web-tag"),
    path("w/p.gif", endpoints.web_pixel, name="web-pixel"),
    path("w/opt-out", recipient_pages.web_opt_out, name="web-opt-out"),
    path("profiles/<int:profile_id>/tracking/", profile_tracking.profile_tracking, name="profile-tracking"),
    path("profiles/<int:profile_id>/erase/", erasure.profile_erase, name="profile-erase"),
]
