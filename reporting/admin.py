from django.contrib import admin, messages

from accounts.admin import RoleAdminMixin
from beacon.exceptions import NotFound, ServiceError
from reporting.models import ConsolidationState, DeliveryReport
from reporting.consolidation.recompute import delivery_recompute


@admin.register(DeliveryReport)
class DeliveryReportAdmin(RoleAdminMixin, admin.ModelAdmin):
    list_display = ("label", "status", "to_deliver", "processed", "success", "errors", "created_at")
    list_filter = ("status",)
    search_fields = ("label",)
    actions = ["recompute_indicators"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Recompute delivery and tracking indicators", permissions=["manage"])
    def recompute_indicators(self, request, queryset) -> None:
        for delivery in queryset:
            try:
                delivery_recompute(delivery_id=delivery.pk)
            except (NotFound, ServiceError) as error:
                self.message_user(request, f"{delivery.label}: {error.message}", messages.ERROR)
            else:
                self.message_user(request, f"{delivery.label}: indicators recomputed.", messages.SUCCESS)


@admin.register(ConsolidationState)
class ConsolidationStateAdmin(admin.ModelAdmin):
    list_display = ("name", "pointer", "consolidated_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
