from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db import models
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.http import urlencode
from django.utils.html import format_html

from accounts.admin import RoleAdminMixin
from accounts.decorators import action_required
from accounts.roles import MANAGE
from beacon.exceptions import NotFound, ServiceError, TransitionNotAllowed
from beacon.forms import StorableJSONField
from profiles import services
from profiles.services import erasure, imports
from profiles.models import EmailStatus, List, ListImport, ListImportRejection, ListMembership, Profile
from profiles.services.quarantine import address_release


class MembershipInline(admin.TabularInline):
    model = ListMembership
    extra = 0
    raw_id_fields = ["profile"]
    readonly_fields = ["added_at"]


@admin.register(Profile)
class ProfileAdmin(RoleAdminMixin, admin.ModelAdmin):
    list_display = [
        "email", "first_name", "last_name", "email_status", "email_format", "tracking_consent", "opted_out_at",
        "created_at", "tracking_link",
    ]
    list_filter = ["email_status", "email_format", "tracking_consent", "lists"]
    search_fields = ["email", "first_name", "last_name"]
    readonly_fields = [
        "email_status", "opted_out_at", "quarantined_at", "email_status_reason", "email_status_changed_at", "soft_bounce_count",
        "soft_bounces_cleared_at", "created_at", "updated_at",
    ]
    date_hierarchy = "created_at"
    # Attributes typed in the admin follow the API's rules: NUL, 1e400 or deep nesting is a field error.
    formfield_overrides = {models.JSONField: {"form_class": StorableJSONField}}
    actions = ["opt_out", "release"]
    # The change page links to the profile's Tracking tab (tracking.admin.ProfileTrackingAdmin).
    change_form_template = "profiles/admin/profile_change_form.html"

    def delete_model(self, request, obj: Profile) -> None:
        """Deleting a profile erases the person, as the API's DELETE does: no address left on their messages."""
        try:
            erasure.profile_erase(profile_id=obj.pk, actor=request.user)
        except ServiceError as error:
            raise PermissionDenied(error.message) from error

    def delete_queryset(self, request, queryset) -> None:
        for profile_id in queryset.values_list("pk", flat=True):
            try:
                erasure.profile_erase(profile_id=profile_id, actor=request.user)
            except (NotFound, ServiceError) as error:
                self.message_user(request, f"Profile {profile_id}: {error.message}", messages.ERROR)

    @admin.display(description="Tracking")
    def tracking_link(self, profile: Profile) -> str:
        return format_html('<a href="{}">Tracking</a>', reverse("admin:tracking_profiletracking_change", args=[profile.pk]))

    @admin.action(description="Opt out (denylist) the selected profiles", permissions=["manage"])
    def opt_out(self, request, queryset):
        count = sum(services.profile_opt_out(profile_id=pk) for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, f"{count} profile(s) opted out.")

    @admin.action(description="Release the selected addresses (back to valid, audited)", permissions=["release_addresses"])
    def release(self, request, queryset):
        released = 0
        for pk in queryset.exclude(email_status=EmailStatus.VALID).filter(opted_out_at__isnull=True).values_list("pk", flat=True):
            try:
                address_release(profile_id=pk, released_by=request.user)
            except TransitionNotAllowed:
                continue  # changed meanwhile
            released += 1
        self.message_user(request, f"{released} address(es) released; opted-out and valid ones are left as they are.")


class CsvImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with a header row; 'email' is required, unknown columns become attributes.")
    update_existing = forms.BooleanField(required=False, help_text="Overwrite names and attributes of existing profiles.")


@admin.register(List)
class ListAdmin(admin.ModelAdmin):
    list_display = ["name", "member_count", "created_at"]
    search_fields = ["name", "description"]
    inlines = [MembershipInline]
    change_form_template = "profiles/admin/list_change_form.html"

    @admin.display(description="Members")
    def member_count(self, obj: List) -> int:
        return obj.memberships.count()

    def get_urls(self):
        return [
            path("<int:pk>/import/", self.admin_site.admin_view(action_required(MANAGE)(self.import_view)), name="profiles_list_import"),
            *super().get_urls(),
        ]

    def import_view(self, request, pk: int):
        """Starts the same background import as the API (columns mapped by header name) and follows it on
        Beacon's import page."""
        list_obj = get_object_or_404(List, pk=pk)
        form = CsvImportForm(request.POST or None, request.FILES or None)
        status = 200 if request.method == "GET" or form.is_valid() else 400
        if request.method == "POST" and form.is_valid():
            try:
                list_import = imports.list_import_create(
                    list_obj=list_obj,
                    file=form.cleaned_data["file"],
                    created_by=request.user,
                    update_existing=form.cleaned_data["update_existing"],
                    map_by_header=True,
                )
            except ServiceError as exc:
                form.add_error("file", exc.message)
                status = exc.status_code
            else:
                return redirect(reverse("profiles:list-import-detail", args=[list_obj.pk, list_import.pk]))
        context = {**self.admin_site.each_context(request), "form": form, "list_obj": list_obj, "opts": self.model._meta, "title": f"Import profiles into {list_obj}"}
        return render(request, "profiles/admin/list_import.html", context, status=status)


class ReadOnlyAdminMixin:
    """A record of what happened: read by whoever holds the view permission, changed by nobody."""

    def get_changelist_instance(self, request):
        # SQLite cannot bind an id filter past 64 bits (`?list_import__exact=9999...`): the admin's own
        # "bad filter" answer, as for any other unusable lookup, instead of a 500.
        try:
            return super().get_changelist_instance(request)
        except OverflowError as exc:
            raise IncorrectLookupParameters(exc) from exc

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ListImport)
class ListImportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The CSV imports into lists, with their counters and a link to their rejected rows (which name
    recipients: marketers and administrators only, as the model permissions say)."""

    list_display = [
        "id", "file_name", "list", "status", "total", "processed", "created", "updated", "added_to_list",
        "rejected", "created_by", "created_at", "finished_at",
    ]
    list_filter = ["status"]
    search_fields = ["file_name", "list__name"]
    list_select_related = ["list", "created_by"]
    list_per_page = 50
    fields = [
        "list", "file_name", "status", "progress_page", "error", "encoding", "delimiter", "header", "mapping",
        "update_existing", "total", "processed", "created", "updated", "added_to_list", "rejected", "rejections_link",
        "created_by", "created_at", "started_at", "finished_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        # The file itself can be megabytes: never loaded to list or show an import.
        return super().get_queryset(request).defer("content")

    @admin.display(description="Progress")
    def progress_page(self, list_import: ListImport) -> str:
        url = reverse("profiles:list-import-detail", args=[list_import.list_id, list_import.pk])
        return format_html('<a href="{}">Progress and rejected rows on Beacon\'s import page</a>', url)

    @admin.display(description="Rejected rows")
    def rejections_link(self, list_import: ListImport) -> str:
        if not list_import.rejected:
            return "None"
        url = reverse("admin:profiles_listimportrejection_changelist") + "?" + urlencode({"list_import__exact": list_import.pk})
        return format_html('<a href="{}">{} rejected row{}</a>', url, list_import.rejected, "" if list_import.rejected == 1 else "s")


@admin.register(ListImportRejection)
class ListImportRejectionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The rejected rows of the imports, a page at a time (an import can reject thousands); reached from an
    import's page, filtered to it."""

    list_display = ["line", "reason", "values", "list_import"]
    list_select_related = ["list_import"]
    search_fields = ["reason"]
    list_per_page = 100
    # No count of every rejection of every import on each page.
    show_full_result_count = False
    fields = ["list_import", "line", "reason", "values"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("list_import__content")
