from django.urls import path

from reporting.api import AcrossReportApi, DeliveryRecomputeApi, DeliveryReportApi

# Explicit paths: the deliveries router (included before these) has no route of this shape.
urlpatterns = [
    path("deliveries/<int:delivery_id>/reports/<str:name>/", DeliveryReportApi.as_view(), name="delivery-report"),
    path("deliveries/<int:delivery_id>/recompute/", DeliveryRecomputeApi.as_view(), name="delivery-recompute"),
    path("reports/<str:name>/", AcrossReportApi.as_view(), name="across-report"),
]
