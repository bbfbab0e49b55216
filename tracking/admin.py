"""Read-only admin for events and user agents, and the profile Tracking tab."""
from django.contrib import admin
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils.html import format_html

from tracking import selectors
from tracking.models import EventType, ProfileTracking, TrackingEvent, UserAgent

PROFILE_TRACKING_PAGE_SIZE = 50


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(TrackingEvent)
class TrackingEventAdmin(ReadOnlyAdmin):
    # Ids rather than related objects: events outlive deleted deliveries and URLs (no FK constraint).
    list_display = ["logged_at", "type", "delivery_id", "message_id", "profile_id", "tracked_url_id", "is_machine", "machine_reason"]
    list_filter = ["type", "is_machine", "machine_reason"]
    search_fields = ["=event_id", "=browser_id"]
    ordering = ["-id"]
    show_full_result_count = False
    list_per_page = 100


@admin.register(UserAgent)
class UserAgentAdmin(ReadOnlyAdmin):
    list_display = ["short_raw", "os_family", "browser_family", "device_type", "is_bot", "parsed_at"]
    list_filter = ["device_type", "is_bot", "os_family"]
    search_fields = ["raw"]

    @admin.display(description="User agent")
    def short_raw(self, agent: UserAgent) -> str:
        return agent.raw[:100]


@admin.register(ProfileTracking)
class ProfileTrackingAdmin(ReadOnlyAdmin):
    """Profiles, each opening onto its Tracking tab: every event across deliveries that still exist."""

    list_display = ["email", "first_name", "last_name", "email_status", "tracking_link"]
    search_fields = ["email", "first_name", "last_name"]

    @admin.display(description="Tracking")
    def tracking_link(self, profile: ProfileTracking) -> str:
        return format_html('<a href="{}/change/">Tracking</a>', profile.pk)

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_staff and (
            request.user.has_perm("tracking.view_profiletracking") or request.user.has_perm("profiles.view_profile")
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if not self.has_view_permission(request):
            raise Http404
        profile = get_object_or_404(ProfileTracking, pk=object_id)
        type_filter = request.GET.get("type", "")
        machine_filter = request.GET.get("machine", "")
        ordering = request.GET.get("o", "-logged_at")
        if ordering not in selectors.PROFILE_TRACKING_ORDERINGS:
            ordering = "-logged_at"
        events = selectors.profile_tracking(
            profile_id=profile.pk,
            types=[type_filter] if type_filter in EventType.values else None,
            machine={"exclude": False, "only": True}.get(machine_filter),
            ordering=ordering,
        )
        page = Paginator(events, PROFILE_TRACKING_PAGE_SIZE).get_page(request.GET.get("p"))
        rows = [
            {
                "event": event,
                "url": selectors.event_url(event, profile),
                "label": selectors.event_label(event, profile),
            }
            for event in page
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Tracking of {profile.email}",
            "profile": profile,
            "page": page,
            "rows": rows,
            "event_types": EventType.choices,
            "type_filter": type_filter,
            "machine_filter": machine_filter,
            "ordering": ordering,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "tracking/admin/profile_tracking.html", context)
