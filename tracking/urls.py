from django.urls import path

from tracking import privacy_views, views

app_name = "tracking"

urlpatterns = [
    path("r/<str:token>", views.click, name="click"),
    path("o/<str:token>", views.open_pixel, name="open"),
    path("m/<str:token>", views.mirror, name="mirror"),
    path("u/<str:token>", views.unsubscribe, name="unsubscribe"),
    path("w/tag.js", views.web_tag, name="web-tag"),
    path("w/p.gif", views.web_pixel, name="web-pixel"),
    path("w/opt-out", views.web_opt_out, name="web-opt-out"),
    path("profiles/<int:profile_id>/tracking/", views.profile_tracking, name="profile-tracking"),
    path("profiles/<int:profile_id>/erase/", privacy_views.profile_erase, name="profile-erase"),
]
