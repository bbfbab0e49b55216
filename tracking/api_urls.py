from django.urls import path

from tracking.api import DeliveryEventListApi, EventListApi, ProfileTrackingApi

urlpatterns = [
    path("profiles/<int:profile_id>/tracking/", ProfileTrackingApi.as_view(), name="profile-tracking"),
    path("events/", EventListApi.as_view(), name="event-list"),
    path("deliveries/<int:delivery_id>/events/", DeliveryEventListApi.as_view(), name="delivery-events"),
]
