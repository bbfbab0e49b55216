from django.contrib import admin

from audiences.models import Segment


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    """Read-only: a rule is written and validated in the pages and the API (`audiences.services`)."""

    list_display = ["name", "updated_at"]
    search_fields = ["name"]
    readonly_fields = ["name", "rule", "created_by", "updated_by", "created_at", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
