from django.urls import path

from audiences import views

app_name = "audiences"

urlpatterns = [
    path("segments/", views.segment_list, name="segment-list"),
    path("segments/from-report/", views.segment_from_report, name="segment-from-report"),
    path("segments/<int:segment_id>/", views.segment_detail, name="segment-detail"),
    path("segments/<int:segment_id>/freeze/", views.segment_freeze, name="segment-freeze"),
    path("segments/<int:segment_id>/delete/", views.segment_delete, name="segment-delete"),
]
