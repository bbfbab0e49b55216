"""REST API for deliveries (`/api/deliveries/`): CRUD while draft or ready, the actions (schedule and
unschedule among them), the delivery log (`messages/`) and the links (`tracked-urls/`). Every write goes
through `deliveries.services`."""
from datetime import datetime

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.roles import MANAGE, READ_PERSONAL_DATA, can
from beacon.send_rates import MAX_RATE_PER_HOUR
from deliveries import selectors, services
from deliveries.models import (
    Delivery, DeliveryAuditEntry, DeliveryStatus, FailureReason, FailureType, Message, MessageStatus, TrackedUrl,
)
from profiles.models import List


class DeliveryOutputSerializer(serializers.ModelSerializer):
    lists = serializers.SerializerMethodField()
    expected_end_at = serializers.SerializerMethodField()

    class Meta:
        model = Delivery
        fields = [
            "id", "label", "subject", "from_email", "reply_to", "html", "text", "lists", "segments", "track_opens",
            "track_clicks", "mirror_page", "status", "analysis_progress", "analysis_error", "checks", "initial_population",
            "excluded_by_cause", "to_deliver", "processed", "success", "errors", "created_at", "updated_at",
            "analyzed_at", "sending_started_at", "finished_at", "scheduled_at", "max_per_hour", "expected_end_at",
        ]

    def get_lists(self, delivery: Delivery) -> list[int]:
        return sorted(item.pk for item in delivery.lists.all())

    def get_expected_end_at(self, delivery: Delivery) -> datetime | None:
        """While sending: when it should be done, from what is left and the rate."""
        return selectors.delivery_expected_end(delivery=delivery)


class DeliveryInputSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=200)
    subject = serializers.CharField(max_length=998)
    from_email = serializers.EmailField(max_length=254)
    reply_to = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    html = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    lists = serializers.PrimaryKeyRelatedField(queryset=List.objects.all(), many=True, required=False)
    # Segment ids; unknown ones are refused by the service (`deliveries.services.audience.segments_check`).
    segments = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=services.MAX_ID), required=False, max_length=services.MAX_SEGMENTS,
    )
    track_opens = serializers.BooleanField(required=False)
    track_clicks = serializers.BooleanField(required=False)
    mirror_page = serializers.BooleanField(required=False)
    max_per_hour = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_RATE_PER_HOUR)


class ScheduleInputSerializer(serializers.Serializer):
    at = serializers.CharField(max_length=64, help_text="ISO 8601 with its UTC offset, e.g. 2026-12-01T09:00:00+01:00.")

    def validate_at(self, value: str) -> datetime:
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise serializers.ValidationError("Not a date and time in ISO 8601, e.g. 2026-12-01T09:00:00+01:00.") from None
        if at.tzinfo is None:
            raise serializers.ValidationError("Give the time with its UTC offset, e.g. 2026-12-01T09:00:00+01:00.")
        return at


class ProofInputSerializer(serializers.Serializer):
    emails = serializers.ListField(child=serializers.CharField(max_length=254), allow_empty=False, max_length=100)
    # Personalized as this profile (it must exist); without it, as the delivery's first recipient.
    profile = serializers.IntegerField(required=False, min_value=1, max_value=services.MAX_ID)


class MessageOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = [
            "id", "profile", "email", "status", "failure_type", "failure_reason", "failure_detail", "audience_source", "sent_at",
            "failed_at",
        ]


# The delivery log's filters, by query parameter, and the values each takes.
MESSAGE_FILTERS = {"status": MessageStatus.values, "failure_type": FailureType.values, "failure_reason": FailureReason.values}


class AuditEntryOutputSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)
    details = serializers.SerializerMethodField()

    def get_details(self, entry: DeliveryAuditEntry) -> dict:
        return selectors.audit_details_visible(entry.details, personal_data=self.context.get("personal_data", False))

    class Meta:
        model = DeliveryAuditEntry
        fields = ["id", "action", "actor", "at", "details"]


class TrackedUrlOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrackedUrl
        fields = ["id", "url", "label", "category", "mode", "position", "in_html", "in_text", "is_personalized"]


class TrackedUrlInputSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=300, required=False, allow_blank=True)
    category = serializers.CharField(max_length=100, required=False, allow_blank=True)
    mode = serializers.ChoiceField(choices=services.CONTENT_LINK_MODES, required=False)


class CheckOutputSerializer(serializers.Serializer):
    code = serializers.CharField()
    severity = serializers.ChoiceField(choices=["error", "warning"])
    message = serializers.CharField()
    field = serializers.CharField()
    count = serializers.IntegerField(allow_null=True)


class ChecksOutputSerializer(serializers.Serializer):
    blocking = serializers.BooleanField()
    checks = CheckOutputSerializer(many=True)


class DeliveryViewSet(viewsets.GenericViewSet):
    """Deliveries. Filters: `?status=`, `?search=`. Actions answer with the delivery."""

    queryset = Delivery.objects.all()
    serializer_class = DeliveryOutputSerializer
    lookup_value_regex = "[0-9]+"
    personal_data = {"messages"}
    # The checks count the audience and read the content: a marketer's tool, like analysis itself.
    required_actions = {"checks": MANAGE}

    def _page(self, request, queryset, serializer_class):
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serializer_class(page, many=True).data)

    def _delivery(self, pk) -> Delivery:
        return get_object_or_404(Delivery, pk=pk)

    def _answer(self, delivery_id: int, code: int = status.HTTP_200_OK) -> Response:
        delivery = Delivery.objects.prefetch_related("lists").get(pk=delivery_id)
        return Response(DeliveryOutputSerializer(delivery).data, status=code)

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=list(DeliveryStatus.values), description="Only deliveries in this status."),
            OpenApiParameter("search", str, description="Deliveries whose label holds this text."),
        ]
    )
    def list(self, request):
        choices = set(DeliveryStatus.values)
        wanted = request.query_params.get("status", "")
        if wanted and wanted not in choices:
            raise serializers.ValidationError({"status": [f"One of: {', '.join(sorted(choices))}."]})
        queryset = selectors.delivery_list(status=wanted, search=request.query_params.get("search", ""))
        return self._page(request, queryset, DeliveryOutputSerializer)

    def retrieve(self, request, pk=None):
        delivery = self._delivery(pk)
        # A client polls this while the delivery analyzes: an analysis that died shows as such.
        services.deliveries_analysis_recover(delivery_id=delivery.pk)
        return self._answer(delivery.pk)

    @extend_schema(request=DeliveryInputSerializer, responses={201: DeliveryOutputSerializer})
    def create(self, request):
        data = DeliveryInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        delivery = services.delivery_create(actor=request.user, **data.validated_data)
        return self._answer(delivery.pk, status.HTTP_201_CREATED)

    @extend_schema(request=DeliveryInputSerializer, responses=DeliveryOutputSerializer)
    def update(self, request, pk=None, partial=False):
        delivery = self._delivery(pk)
        data = DeliveryInputSerializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        services.delivery_update(delivery_id=delivery.pk, actor=request.user, **data.validated_data)
        return self._answer(delivery.pk)

    @extend_schema(request=DeliveryInputSerializer, responses=DeliveryOutputSerializer)
    def partial_update(self, request, pk=None):
        return self.update(request, pk=pk, partial=True)

    def destroy(self, request, pk=None):
        services.delivery_delete(delivery_id=self._delivery(pk).pk, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={202: DeliveryOutputSerializer})
    @action(detail=True, methods=["post"])
    def analyze(self, request, pk=None):
        """Starts the analysis in the background (202): the delivery is `analyzing`, `analysis_progress`
        in percent, until it is `ready`, or back to `draft` with `analysis_error` (and its `checks`)."""
        delivery = services.delivery_analysis_request(delivery_id=self._delivery(pk).pk, actor=request.user)
        return self._answer(delivery.pk, status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=DeliveryOutputSerializer)
    @action(detail=True, methods=["post"])
    def send(self, request, pk=None):
        delivery = services.delivery_send(delivery_id=self._delivery(pk).pk, actor=request.user)
        return self._answer(delivery.pk, status.HTTP_202_ACCEPTED)

    @extend_schema(request=ScheduleInputSerializer, responses=DeliveryOutputSerializer)
    @action(detail=True, methods=["post"])
    def schedule(self, request, pk=None):
        """`{at}`: an analyzed (ready) delivery starts sending by itself at `at` (status `scheduled`); a
        scheduled one moves to the new time. 400 for a time past or more than a year ahead, 409 for a
        draft (analyze it first) or a delivery already sending."""
        delivery = self._delivery(pk)
        data = ScheduleInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.delivery_schedule(delivery_id=delivery.pk, at=data.validated_data["at"], actor=request.user)
        return self._answer(delivery.pk)

    @extend_schema(request=None, responses=DeliveryOutputSerializer)
    @action(detail=True, methods=["post"])
    def unschedule(self, request, pk=None):
        """A scheduled delivery back to ready (`scheduled_at` cleared)."""
        delivery = services.delivery_unschedule(delivery_id=self._delivery(pk).pk, actor=request.user)
        return self._answer(delivery.pk)

    @extend_schema(request=None, responses=DeliveryOutputSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        delivery = services.delivery_pause(delivery_id=self._delivery(pk).pk, actor=request.user)
        return self._answer(delivery.pk)

    @extend_schema(request=None, responses=DeliveryOutputSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        delivery = services.delivery_resume(delivery_id=self._delivery(pk).pk, actor=request.user)
        return self._answer(delivery.pk, status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=DeliveryOutputSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        delivery = services.delivery_cancel(delivery_id=self._delivery(pk).pk, actor=request.user)
        return self._answer(delivery.pk)

    @extend_schema(responses=ChecksOutputSerializer)
    @action(detail=True, methods=["get"])
    def checks(self, request, pk=None):
        """The checks before sending, run now without analyzing; `blocking` when an error would refuse the
        analysis (which answers 400 with code `checks_failed` and the errors' messages in `fields`)."""
        checks = services.delivery_checks(delivery=self._delivery(pk))
        return Response(ChecksOutputSerializer({
            "blocking": bool(services.checks_errors(checks)), "checks": [check.as_dict() for check in checks],
        }).data)

    @extend_schema(request=ProofInputSerializer, responses={200: dict})
    @action(detail=True, methods=["post"])
    def proof(self, request, pk=None):
        """`{emails: [...], profile: id}`: sends a proof to each address (not counted, no delivery log rows),
        personalized as that profile, or without `profile` as the delivery's first recipient."""
        data = ProofInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sent = services.delivery_proof(
            delivery_id=self._delivery(pk).pk, emails=data.validated_data["emails"],
            profile_id=data.validated_data.get("profile"), actor=request.user,
        )
        return Response({"sent": sent})

    @extend_schema(
        responses=MessageOutputSerializer(many=True),
        parameters=[OpenApiParameter(name, str, enum=list(choices)) for name, choices in MESSAGE_FILTERS.items()],
    )
    @action(detail=True, methods=["get"])
    def messages(self, request, pk=None):
        """The delivery log; `?status=` one of pending, sending, sent, failed, ignored; `?failure_type=`
        hard, soft or ignored; `?failure_reason=` one of the failure reasons (user_unknown, mailbox_full, ...)."""
        filters = {}
        for name, choices in MESSAGE_FILTERS.items():
            wanted = request.query_params.get(name, "")
            if wanted and wanted not in choices:
                raise serializers.ValidationError({name: [f"One of: {', '.join(choices)}."]})
            filters[name] = wanted
        queryset = selectors.delivery_messages(delivery_id=self._delivery(pk).pk, **filters)
        return self._page(request, queryset, MessageOutputSerializer)

    @extend_schema(responses=AuditEntryOutputSerializer(many=True))
    @action(detail=True, methods=["get"])
    def audit(self, request, pk=None):
        """Who created, changed, analyzed, sent, paused, resumed, cancelled the delivery, and when."""
        page = self.paginate_queryset(selectors.delivery_audit(delivery_id=self._delivery(pk).pk))
        # Viewers read the audit, but not the recipients a proof went to.
        context = {"personal_data": can(request.user, READ_PERSONAL_DATA)}
        return self.get_paginated_response(AuditEntryOutputSerializer(page, many=True, context=context).data)

    @extend_schema(operation_id="deliveries_tracked_urls_list", responses=TrackedUrlOutputSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="tracked-urls")
    def tracked_urls(self, request, pk=None):
        queryset = selectors.delivery_tracked_urls(delivery_id=self._delivery(pk).pk)
        return self._page(request, queryset, TrackedUrlOutputSerializer)

    @extend_schema(request=TrackedUrlInputSerializer, responses=TrackedUrlOutputSerializer)
    @action(detail=True, methods=["get", "patch"], url_path=r"tracked-urls/(?P<url_id>[0-9]+)")
    def tracked_url(self, request, pk=None, url_id=None):
        """PATCH `{label, category, mode}`: links with the same label count together in reports; `mode`
        (`tracked` or `not_tracked`) changes only before sending."""
        tracked_url = get_object_or_404(TrackedUrl, pk=url_id, delivery_id=self._delivery(pk).pk)
        if request.method == "PATCH":
            data = TrackedUrlInputSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            tracked_url = services.tracked_url_update(tracked_url=tracked_url, **data.validated_data)
        return Response(TrackedUrlOutputSerializer(tracked_url).data)
