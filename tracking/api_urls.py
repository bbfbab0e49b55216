from django.urls import path

from tracking.api import DeliveryEventListApi, EventListApi, ProfilePrivacyViewSet, ProfileTrackingApi

urlpatterns = [
    path("profiles/<int:profile_id>/tracking/", ProfileTrackingApi.as_view(), name="profile-tracking"),
    path("profiles/<int:profile_id>/export/", ProfilePrivacyViewSet.as_view({"get": "export"}), name="profile-export"),
    path("profiles/<int:profile_id>/erase/", ProfilePrivacyViewSet.as_view({"post": "erase"}), name="profile-erase"),
    path("events/", EventListApi.as_view(), name="event-list"),
    path("deliveries/<int:delivery_id>/events/", DeliveryEventListApi.as_view(), name="delivery-events"),
]
