"""REST API for outgoing webhooks (`/api/webhooks/`): administrators only (DESIGN.md, Roles)."""
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.roles import MANAGE_WEBHOOKS
from webhooks import selectors
from webhooks.models import Attempt, EventType, Subscription
from webhooks.services import subscriptions as services
from webhooks.transport import MAX_URL_LENGTH


class SubscriptionOutputSerializer(serializers.ModelSerializer):
    events = serializers.ListField(source="event_types", child=serializers.CharField())

    class Meta:
        model = Subscription
        fields = [
            "id", "url", "events", "humans_only", "is_active", "failure_count", "disabled_at", "disabled_reason",
            "created_at", "updated_at",
        ]


class SubscriptionCreatedSerializer(SubscriptionOutputSerializer):
    """The answer to a create: the only one that holds the secret."""

    class Meta(SubscriptionOutputSerializer.Meta):
        fields = [*SubscriptionOutputSerializer.Meta.fields, "secret"]


class SubscriptionInputSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=MAX_URL_LENGTH)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices), min_length=1, max_length=len(EventType.values),
    )
    secret = serializers.CharField(
        max_length=100, required=False, allow_blank=True, trim_whitespace=False,
        help_text="`whsec_` and the base64 of 24 to 64 bytes; left out, one is made and shown once.",
    )
    humans_only = serializers.BooleanField(required=False, help_text="Leave out machine events (default true).")
    is_active = serializers.BooleanField(required=False, help_text="true re-enables a disabled subscription.")


class AttemptOutputSerializer(serializers.ModelSerializer):
    webhook_id = serializers.SerializerMethodField()
    event_type = serializers.CharField(source="notification.event_type")
    event_id = serializers.UUIDField(source="notification.event_id")

    class Meta:
        model = Attempt
        fields = ["id", "webhook_id", "event_type", "event_id", "number", "attempted_at", "succeeded", "status_code", "error", "response_ms"]

    def get_webhook_id(self, attempt: Attempt) -> str:
        return attempt.notification.header_id


class PingOutputSerializer(serializers.Serializer):
    webhook_id = serializers.CharField()


class SubscriptionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Outgoing webhooks: a URL, the event types it receives, signed per Standard Webhooks."""

    serializer_class = SubscriptionOutputSerializer
    required_actions = dict.fromkeys(
        ["list", "retrieve", "create", "update", "partial_update", "destroy", "attempts", "test"], MANAGE_WEBHOOKS
    )
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        return selectors.subscription_list()

    @extend_schema(request=SubscriptionInputSerializer, responses={201: SubscriptionCreatedSerializer})
    def create(self, request):
        data = SubscriptionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        subscription = services.subscription_create(
            url=fields["url"], event_types=fields["events"], secret=fields.get("secret"),
            humans_only=fields.get("humans_only", True), actor=request.user,
        )
        return Response(SubscriptionCreatedSerializer(subscription).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=SubscriptionInputSerializer, responses=SubscriptionOutputSerializer)
    def update(self, request, pk=None, partial=False):
        subscription = get_object_or_404(Subscription, pk=pk)
        data = SubscriptionInputSerializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        subscription = services.subscription_update(
            subscription_id=subscription.pk, url=fields.get("url"), event_types=fields.get("events"),
            secret=fields.get("secret"), humans_only=fields.get("humans_only"), is_active=fields.get("is_active"),
        )
        return Response(SubscriptionOutputSerializer(subscription).data)

    @extend_schema(request=SubscriptionInputSerializer, responses=SubscriptionOutputSerializer)
    def partial_update(self, request, pk=None):
        return self.update(request, pk=pk, partial=True)

    def destroy(self, request, pk=None):
        services.subscription_delete(subscription_id=get_object_or_404(Subscription, pk=pk).pk)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=AttemptOutputSerializer(many=True))
    @action(detail=True, methods=["get"])
    def attempts(self, request, pk=None):
        """The delivery log: one row per HTTP attempt, newest first."""
        subscription = get_object_or_404(Subscription, pk=pk)
        page = self.paginate_queryset(selectors.subscription_attempts(subscription_id=subscription.pk))
        return self.get_paginated_response(AttemptOutputSerializer(page, many=True).data)

    @extend_schema(request=None, responses={202: PingOutputSerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Queues a signed `ping` to the URL (once, never retried); its outcome is in `attempts`."""
        notification = services.subscription_ping(subscription_id=get_object_or_404(Subscription, pk=pk).pk)
        return Response({"webhook_id": notification.header_id}, status=status.HTTP_202_ACCEPTED)
