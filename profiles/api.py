"""REST API for profiles and lists (`/api/profiles/`, `/api/lists/`)."""
from django.conf import settings
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from accounts.roles import RELEASE_ADDRESSES, REMOVE_PROFILES
from beacon.parsers import JSONParser
from profiles import selectors, services
from profiles.services import erasure, imports
from profiles.models import AddressRelease, EmailFormat, EmailStatus, List, ListImport, Profile
from profiles.services.quarantine import address_release


class ProfileOutputSerializer(serializers.ModelSerializer):
    lists = serializers.SerializerMethodField()

    class Meta:
        model = Profile
        fields = [
            "id", "email", "first_name", "last_name", "attributes", "email_status", "email_format",
            "tracking_consent", "language", "opted_out_at", "soft_bounce_count", "quarantined_at",
            "email_status_reason", "email_status_changed_at", "lists",
            "created_at", "updated_at",
        ]

    def get_lists(self, profile: Profile) -> list[int]:
        return [membership.list_id for membership in profile.memberships.all()]


class AddressReleaseOutputSerializer(serializers.ModelSerializer):
    released_by = serializers.CharField(source="released_by.username", default=None)

    class Meta:
        model = AddressRelease
        fields = ["profile", "released_by", "released_at", "previous_status", "previous_reason"]


class ProfileInputSerializer(serializers.Serializer):
    email = serializers.CharField(max_length=254)
    first_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    last_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    attributes = serializers.DictField(required=False)
    email_format = serializers.ChoiceField(choices=EmailFormat.choices, required=False)
    email_status = serializers.ChoiceField(choices=EmailStatus.choices, required=False)
    tracking_consent = serializers.BooleanField(required=False)
    language = serializers.ChoiceField(choices=settings.LANGUAGES, required=False, allow_null=True)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("search", str, description="Profiles whose email, first or last name holds this text."),
            OpenApiParameter("email_status", str, enum=list(EmailStatus.values)),
            OpenApiParameter("list", int, description="Only the members of this list."),
        ]
    )
)
class ProfileViewSet(viewsets.ModelViewSet):
    """Recipient profiles. Filters: `?search=`, `?email_status=`, `?list=<id>`."""

    serializer_class = ProfileOutputSerializer
    personal_data = True
    required_actions = {"destroy": REMOVE_PROFILES, "release": RELEASE_ADDRESSES}
    # A non-numeric id matches no route: a JSON 404, not a ValueError in the lookup.
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        list_id = self.request.query_params.get("list")
        if list_id is not None and not list_id.isdigit():
            raise ValidationError({"list": ["A list id is a number."]})
        return selectors.profile_list(
            search=self.request.query_params.get("search", ""),
            email_status=self.request.query_params.get("email_status", ""),
            list_id=int(list_id) if list_id else None,
        ).prefetch_related("memberships")

    def get_serializer_class(self):
        if self.action in {"create", "update", "partial_update"}:
            return ProfileInputSerializer
        return ProfileOutputSerializer

    def create(self, request, *args, **kwargs):
        data = ProfileInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        profile = services.profile_create(**data.validated_data)
        return Response(ProfileOutputSerializer(profile).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, *args, **kwargs):
        """Erases the person, as `POST /api/profiles/<id>/erase/` does: a profile is never deleted in a
        way that leaves their address on the messages sent to them."""
        erasure.profile_erase(profile_id=self.get_object().pk, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def update(self, request, *args, **kwargs):
        profile = self.get_object()
        data = ProfileInputSerializer(data=request.data, partial=kwargs.get("partial", False))
        data.is_valid(raise_exception=True)
        profile = services.profile_update(profile=profile, **data.validated_data)
        return Response(ProfileOutputSerializer(profile).data)

    @extend_schema(request=None, responses={200: AddressReleaseOutputSerializer})
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        """Puts a quarantined or denylisted address back to valid (administrators; audited). 409 when it
        is valid, or opted out (only the person opts back in)."""
        release = address_release(profile_id=int(pk), released_by=request.user)
        return Response(AddressReleaseOutputSerializer(release).data)


class ListOutputSerializer(serializers.ModelSerializer):
    profile_count = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = List
        fields = ["id", "name", "description", "profile_count", "created_at"]


class ListInputSerializer(serializers.ModelSerializer):
    class Meta:
        model = List
        fields = ["name", "description"]
        # The service decides whether the name is free (`services.list_create`, race included).
        extra_kwargs = {"name": {"validators": []}}


class ProfileIdsSerializer(serializers.Serializer):
    profile_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), allow_empty=False, max_length=100_000)


class CsvImportSerializer(serializers.Serializer):
    file = serializers.FileField()
    update_existing = serializers.BooleanField(default=False)


class ListImportOutputSerializer(serializers.ModelSerializer):
    status_url = serializers.SerializerMethodField()
    rejections = serializers.SerializerMethodField()

    class Meta:
        model = ListImport
        fields = [
            "id", "list", "file_name", "status", "total", "processed", "created", "updated", "added_to_list",
            "rejected", "error", "created_at", "started_at", "finished_at", "status_url", "rejections",
        ]

    def get_status_url(self, list_import: ListImport) -> str:
        return self.context["request"].build_absolute_uri(
            reverse("list-import-status", args=[list_import.list_id, list_import.pk])
        )

    def get_rejections(self, list_import: ListImport) -> list[dict]:
        """The first rejected rows: `{line, reason, values}`; the import page offers them all as CSV."""
        return selectors.list_import_rejections(list_import=list_import)


class ListViewSet(mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Lists of profiles: members under `profiles/`, CSV import under `import/`."""

    lookup_value_regex = "[0-9]+"
    # An import's status names the rejected rows, addresses included.
    personal_data = {"profiles", "import_status"}

    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_queryset(self):
        return selectors.list_list()

    def get_serializer_class(self):
        if self.action in {"create", "update", "partial_update"}:
            return ListInputSerializer
        if self.action == "profiles":
            return ProfileIdsSerializer
        if self.action == "import_csv":
            return CsvImportSerializer
        return ListOutputSerializer

    def create(self, request, *args, **kwargs):
        data = ListInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        list_obj = services.list_create(**data.validated_data)
        return Response(ListOutputSerializer(list_obj).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        services.list_update(list_obj=serializer.instance, **serializer.validated_data)

    @action(detail=True, methods=["get", "post", "delete"])
    def profiles(self, request, pk=None):
        """GET the members; POST `{profile_ids: [...]}` adds them; DELETE with the same body removes them."""
        list_obj = get_object_or_404(List, pk=pk)
        if request.method == "GET":
            page = self.paginate_queryset(selectors.profile_list(list_id=list_obj.pk).prefetch_related("memberships"))
            return self.get_paginated_response(ProfileOutputSerializer(page, many=True).data)
        data = ProfileIdsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids = data.validated_data["profile_ids"]
        if request.method == "POST":
            added = services.list_add_profiles(list_obj=list_obj, profile_ids=ids)
            return Response({"id": list_obj.pk, "added": added, "profile_count": list_obj.memberships.count()})
        removed = services.list_remove_profiles(list_obj=list_obj, profile_ids=ids)
        return Response({"id": list_obj.pk, "removed": removed, "profile_count": list_obj.memberships.count()})

    @action(detail=True, methods=["post"], url_path="import")
    def import_csv(self, request, pk=None):
        """Multipart `file` (CSV with an `email` header) and optional `update_existing`: 202, and the import
        runs in the background; its columns are mapped by their header names (unknown ones become
        attributes). Follow it at `status_url`."""
        list_obj = get_object_or_404(List, pk=pk)
        data = CsvImportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        list_import = imports.list_import_create(
            list_obj=list_obj,
            file=data.validated_data["file"],
            created_by=request.user,
            update_existing=data.validated_data["update_existing"],
            map_by_header=True,
        )
        # Read again: with tasks run in-process, the import has already run.
        list_import = selectors.list_import_get(list_id=list_obj.pk, import_id=list_import.pk)
        body = ListImportOutputSerializer(list_import, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["status_url"]})

    @extend_schema(responses=ListImportOutputSerializer)
    @action(detail=True, methods=["get"], url_path=r"imports/(?P<import_id>[0-9]+)")
    def import_status(self, request, pk=None, import_id=None):
        """Where an import stands: its status and counters, and the first rejected rows with why."""
        list_import = selectors.list_import_get(list_id=pk, import_id=int(import_id))
        return Response(ListImportOutputSerializer(list_import, context={"request": request}).data)
