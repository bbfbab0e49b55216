"""Events API: a profile's Tracking tab, all events, a delivery's events; a person's export and erase."""
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from accounts.roles import REMOVE_PROFILES

from deliveries.models import Delivery
from profiles.models import Profile
from tracking import selectors, services
from tracking.models import EventType, TrackingEvent


# `machine=` query values: humans only, machines only, or all (the default).
MACHINE_FILTER_VALUES = {"exclude": False, "only": True, "include": None}


class EventFilterSerializer(serializers.Serializer):
    type = serializers.MultipleChoiceField(choices=EventType.choices, required=False)
    machine = serializers.ChoiceField(choices=sorted(MACHINE_FILTER_VALUES), required=False)
    delivery = serializers.IntegerField(required=False, min_value=1)
    profile = serializers.IntegerField(required=False, min_value=1)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)

    def to_filters(self) -> dict:
        data = self.validated_data
        return {
            "types": sorted(data.get("type") or []) or None,
            "machine": MACHINE_FILTER_VALUES[data["machine"]] if "machine" in data else None,
            "delivery_id": data.get("delivery"),
            "since": data.get("since"),
            "until": data.get("until"),
        }


def _filters(request, *, with_profile: bool = False) -> dict:
    params = {key: request.query_params.getlist(key) if key == "type" else value for key, value in request.query_params.items()}
    serializer = EventFilterSerializer(data=params)
    serializer.is_valid(raise_exception=True)
    filters = serializer.to_filters()
    if with_profile:
        filters["profile_id"] = serializer.validated_data.get("profile")
    return filters


class DeliveryBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    label = serializers.CharField()


class ProfileTrackingOutputSerializer(serializers.Serializer):
    type = serializers.CharField()
    url = serializers.SerializerMethodField()
    label = serializers.SerializerMethodField()
    logged_at = serializers.DateTimeField()
    delivery = DeliveryBriefSerializer()
    machine = serializers.BooleanField(source="is_machine")
    machine_reason = serializers.CharField()

    def get_url(self, event: TrackingEvent) -> str:
        return selectors.event_url(event, event.profile)

    def get_label(self, event: TrackingEvent) -> str:
        return selectors.event_label(event, event.profile)


@extend_schema(parameters=[EventFilterSerializer])
class ProfileTrackingApi(ListAPIView):
    """GET /api/profiles/<id>/tracking/: the person's events across existing deliveries.

    Filters: `type` (repeatable), `machine` (exclude / only / include), `delivery`, `since`, `until`;
    `ordering`: logged_at, type, delivery, each optionally prefixed with `-` (default `-logged_at`).
    """

    serializer_class = ProfileTrackingOutputSerializer
    personal_data = True

    class OrderingSerializer(serializers.Serializer):
        ordering = serializers.ChoiceField(choices=sorted(selectors.PROFILE_TRACKING_ORDERINGS), default="-logged_at")

    def get_queryset(self):
        profile = get_object_or_404(Profile, pk=self.kwargs["profile_id"])
        ordering = self.OrderingSerializer(data={"ordering": self.request.query_params.get("ordering", "-logged_at")})
        ordering.is_valid(raise_exception=True)
        filters = _filters(self.request)
        return selectors.profile_tracking(profile_id=profile.pk, ordering=ordering.validated_data["ordering"], **filters)


class EventCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class EventOutputSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    label = serializers.SerializerMethodField()
    user_agent = serializers.SerializerMethodField()
    os = serializers.CharField(source="user_agent.os_family", default="")
    browser = serializers.CharField(source="user_agent.browser_family", default="")
    device_type = serializers.CharField(source="user_agent.device_type", default="")

    class Meta:
        model = TrackingEvent
        fields = [
            "id",
            "event_id",
            "type",
            "logged_at",
            "delivery",
            "message",
            "profile",
            "tracked_url",
            "url",
            "label",
            "user_agent",
            "os",
            "browser",
            "device_type",
            "ip",
            "browser_id",
            "page_url",
            "amount",
            "is_machine",
            "machine_reason",
        ]

    def get_url(self, event: TrackingEvent) -> str:
        return selectors.event_url(event, event.profile)

    def get_label(self, event: TrackingEvent) -> str:
        return selectors.event_label(event, event.profile)

    def get_user_agent(self, event: TrackingEvent) -> str:
        return event.user_agent.raw if event.user_agent_id and event.user_agent else ""


@extend_schema(parameters=[EventFilterSerializer])
class EventListApi(ListAPIView):
    """GET /api/events/: raw events, newest first, cursor-paginated.

    Filters: `delivery`, `profile`, `type` (repeatable), `machine` (exclude / only / include),
    `since`, `until` (ISO 8601).
    """

    serializer_class = EventOutputSerializer
    pagination_class = EventCursorPagination
    personal_data = True

    def get_queryset(self):
        return selectors.events_filter(**_filters(self.request, with_profile=True))


@extend_schema(parameters=[EventFilterSerializer])
class DeliveryEventListApi(EventListApi):
    """GET /api/deliveries/<id>/events/: the delivery's raw events, with the same filters."""

    def get_queryset(self):
        delivery = get_object_or_404(Delivery, pk=self.kwargs["delivery_id"])
        filters = _filters(self.request, with_profile=True)
        filters["delivery_id"] = delivery.pk
        return selectors.events_filter(**filters)


class ProfilePrivacyViewSet(viewsets.ViewSet):
    """A person's privacy rights. `GET /api/profiles/<id>/export/`: everything Beacon holds on them, as
    JSON (roles that read personal data). `POST /api/profiles/<id>/erase/`: the person erased, their
    events kept anonymously, every report unchanged (administrators; 409 while a delivery may still send
    to them). Here, not in profiles, because both read or change tracking's events."""

    personal_data = True
    # Erasing removes a person: REMOVE_PROFILES ("delete or erase a profile"), not PURGE, which is
    # retention's clean-up of old data, nobody in particular.
    required_actions = {"erase": REMOVE_PROFILES}

    @extend_schema(responses={200: dict})
    def export(self, request, profile_id: int):
        # An attachment: the profile page's button downloads it as a file.
        disposition = f'attachment; filename="profile-{profile_id}.json"'
        return Response(selectors.profile_export(profile_id=profile_id), headers={"Content-Disposition": disposition})

    @extend_schema(request=None, responses={200: dict})
    def erase(self, request, profile_id: int):
        erasure = services.profile_erase(profile_id=profile_id, actor=request.user)
        return Response({
            "erased": True,
            "profile_id": erasure.profile_id,
            "messages_anonymized": erasure.messages_anonymized,
            "events_anonymized": erasure.events_anonymized,
        })
