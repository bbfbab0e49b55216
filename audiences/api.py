"""REST API for segments (`/api/segments/`): CRUD, their members, freezing into a list, a count preview,
and a report's audiences (`from-report/`). Viewers read names and counts; members and rules (a rule may
name a person: `email eq ...`) need the right to read personal data; every write is a marketer's."""
from django.http import StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.roles import MANAGE, READ_PERSONAL_DATA, can
from audiences import selectors, services
from audiences.models import Segment
from audiences.rules import MAX_ID, MAX_STRING, REACTIONS


class SegmentOutputSerializer(serializers.ModelSerializer):
    rule = serializers.SerializerMethodField()

    class Meta:
        model = Segment
        fields = ["id", "name", "rule", "created_at", "updated_at"]

    def get_rule(self, segment: Segment) -> dict | None:
        """The rule, to those who may read personal data; None to viewers."""
        return segment.rule if self.context.get("personal_data") else None


class SegmentCountOutputSerializer(SegmentOutputSerializer):
    count = serializers.IntegerField()

    class Meta(SegmentOutputSerializer.Meta):
        fields = [*SegmentOutputSerializer.Meta.fields, "count"]


class SegmentInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    rule = serializers.JSONField()


class RuleInputSerializer(serializers.Serializer):
    rule = serializers.JSONField()


class FreezeInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)


class FrozenListOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    profile_count = serializers.IntegerField()


class FromReportInputSerializer(serializers.Serializer):
    delivery = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    reaction = serializers.ChoiceField(choices=list(REACTIONS))
    url_label = serializers.CharField(max_length=MAX_STRING, required=False, allow_blank=True, default="")
    # What to make of it: a segment (live), a list (frozen now), or a CSV of the people.
    make = serializers.ChoiceField(choices=["segment", "list", "csv"], default="segment")


class MemberOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.CharField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    email_status = serializers.CharField()


class SegmentViewSet(viewsets.GenericViewSet):
    """Segments: `{name, rule}` (the rule language: DESIGN.md and `audiences/rules.py`)."""

    queryset = Segment.objects.all()
    serializer_class = SegmentOutputSerializer
    # At most 19 digits: int() of a longer one could exceed what Python converts (a 500); no such id exists.
    lookup_value_regex = "[0-9]{1,19}"
    personal_data = {"profiles"}
    # A report's audience as a CSV is the people themselves; as a segment or list, a marketer's write.
    required_actions = {"from_report": MANAGE, "preview": MANAGE}

    def _context(self) -> dict:
        return {"personal_data": can(self.request.user, READ_PERSONAL_DATA)}

    def _answer(self, segment: Segment, code: int = status.HTTP_200_OK) -> Response:
        body = SegmentOutputSerializer(segment, context=self._context()).data
        return Response({**body, "count": selectors.segment_count(segment=segment)}, status=code)

    def list(self, request):
        """Names (and rules, for those who may read personal data), by name; a count is per segment."""
        page = self.paginate_queryset(selectors.segment_list())
        return self.get_paginated_response(SegmentOutputSerializer(page, many=True, context=self._context()).data)

    @extend_schema(responses=SegmentCountOutputSerializer)
    def retrieve(self, request, pk=None):
        return self._answer(selectors.segment_get(segment_id=int(pk)))

    @extend_schema(request=SegmentInputSerializer, responses={201: SegmentCountOutputSerializer})
    def create(self, request):
        data = SegmentInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        segment = services.segment_create(actor=request.user, **data.validated_data)
        return self._answer(segment, status.HTTP_201_CREATED)

    @extend_schema(request=SegmentInputSerializer, responses=SegmentCountOutputSerializer)
    def partial_update(self, request, pk=None):
        data = SegmentInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        segment = services.segment_update(segment_id=int(pk), actor=request.user, **data.validated_data)
        return self._answer(segment)

    def destroy(self, request, pk=None):
        services.segment_delete(segment_id=int(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=MemberOutputSerializer(many=True))
    @action(detail=True, methods=["get"])
    def profiles(self, request, pk=None):
        """Who is in the segment now, by id, paginated; `count` is the segment's size."""
        segment = selectors.segment_get(segment_id=int(pk))
        page = self.paginate_queryset(selectors.segment_profiles(segment=segment))
        return self.get_paginated_response(MemberOutputSerializer(page, many=True).data)

    @extend_schema(request=FreezeInputSerializer, responses={201: FrozenListOutputSerializer})
    @action(detail=True, methods=["post"])
    def freeze(self, request, pk=None):
        """`{name}`: a new list holding who is in the segment now (one INSERT ... SELECT)."""
        data = FreezeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        list_obj = services.segment_freeze(segment_id=int(pk), list_name=data.validated_data["name"])
        return Response(
            {"id": list_obj.pk, "name": list_obj.name, "profile_count": list_obj.memberships.count()},
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=RuleInputSerializer, responses={200: dict})
    @action(detail=False, methods=["post"])
    def preview(self, request):
        """`{rule}`: how many profiles the rule matches now, without saving it."""
        data = RuleInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rule, count = selectors.rule_preview(rule=data.validated_data["rule"])
        return Response({"rule": rule, "count": count})

    @extend_schema(request=FromReportInputSerializer, responses={201: dict})
    @action(detail=False, methods=["post"], url_path="from-report")
    def from_report(self, request):
        """`{delivery, reaction: opened|clicked|not_opened, url_label, make: segment|list|csv}`: the
        people of a delivery's report (people only) as a new segment (201, the segment), a new list
        (201, the list) or a CSV of their id, email and names."""
        data = FromReportInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        wanted = dict(data.validated_data)
        make = wanted.pop("make")
        wanted["delivery_id"] = wanted.pop("delivery")
        if make == "segment":
            return self._answer(services.segment_from_report(actor=request.user, **wanted), status.HTTP_201_CREATED)
        if make == "list":
            list_obj = services.list_from_report(**wanted)
            return Response(
                {"id": list_obj.pk, "name": list_obj.name, "profile_count": list_obj.memberships.count()},
                status=status.HTTP_201_CREATED,
            )
        lines, file_name = selectors.report_audience_csv(**wanted)
        response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{file_name}"'
        return response
