from django import forms
from django.contrib import admin
from django.db import models
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.admin import RoleAdminMixin
from accounts.decorators import action_required
from accounts.roles import MANAGE
from beacon.exceptions import ServiceError
from beacon.forms import StorableJSONField
from profiles import services
from profiles.models import List, ListMembership, Profile


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
    readonly_fields = ["opted_out_at", "quarantined_at", "soft_bounce_count", "created_at", "updated_at"]
    date_hierarchy = "created_at"
    # Attributes typed in the admin follow the API's rules: NUL, 1e400 or deep nesting is a field error.
    formfield_overrides = {models.JSONField: {"form_class": StorableJSONField}}
    actions = ["opt_out", "restore_to_valid"]
    # The change page links to the profile's Tracking tab (tracking.admin.ProfileTrackingAdmin).
    change_form_template = "profiles/admin/profile_change_form.html"

    @admin.display(description="Tracking")
    def tracking_link(self, profile: Profile) -> str:
        return format_html('<a href="{}">Tracking</a>', reverse("admin:tracking_profiletracking_change", args=[profile.pk]))

    @admin.action(description="Opt out (denylist) the selected profiles", permissions=["manage"])
    def opt_out(self, request, queryset):
        count = sum(services.profile_opt_out(profile_id=pk) for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, f"{count} profile(s) opted out.")

    @admin.action(description="Set email status back to valid (lift quarantine)", permissions=["manage"])
    def restore_to_valid(self, request, queryset):
        count = services.profile_restore(profile_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} profile(s) set back to valid.")


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
                list_import = services.list_import_create(
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
