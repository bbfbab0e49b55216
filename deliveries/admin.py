from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html

from accounts.admin import RoleAdminMixin
from beacon.exceptions import NotFound, ServiceError
from deliveries import services
from deliveries.forms import add_service_errors
from deliveries.models import Delivery, DeliveryAuditEntry, Message, TrackedUrl

COUNTERS = ["initial_population", "excluded_by_cause", "to_deliver", "processed", "success", "errors"]
DATES = ["created_at", "updated_at", "analyzed_at", "sending_started_at", "finished_at"]


class TrackedUrlInline(admin.TabularInline):
    model = TrackedUrl
    extra = 0
    fields = ["position", "url", "label", "category", "mode", "in_html", "in_text", "is_personalized"]
    readonly_fields = ["position", "url", "mode", "in_html", "in_text", "is_personalized"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class AuditInline(admin.TabularInline):
    model = DeliveryAuditEntry
    extra = 0
    fields = ["at", "action", "actor", "details"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class DeliveryAdminForm(forms.ModelForm):
    class Meta:
        model = Delivery
        fields = ["label", "subject", "from_email", "reply_to", "html", "text", "lists", "track_opens", "track_clicks", "mirror_page"]

    def clean(self):
        data = super().clean()
        try:
            services.delivery_validate(**{name: data.get(name) or "" for name in ["label", "subject", "from_email", "reply_to", "html", "text"]})
        except ValidationError as exc:
            add_service_errors(self, exc)
        return data


@admin.register(Delivery)
class DeliveryAdmin(RoleAdminMixin, admin.ModelAdmin):
    form = DeliveryAdminForm
    list_display = ["label", "status", "to_deliver", "processed", "success", "errors", "created_at", "finished_at"]
    list_filter = ["status", "track_opens", "track_clicks", "created_at"]
    search_fields = ["label", "subject", "from_email"]
    date_hierarchy = "created_at"
    filter_horizontal = ["lists"]
    inlines = [TrackedUrlInline, AuditInline]
    actions = ["analyze", "send", "pause", "resume", "cancel"]
    readonly_fields = ["status", "analysis_error", "delivery_log", *COUNTERS, "created_by", *DATES]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status not in services.EDITABLE_STATUSES:
            return [*DeliveryAdminForm.Meta.fields, *self.readonly_fields]
        return self.readonly_fields

    @admin.display(description="Delivery log")
    def delivery_log(self, obj: Delivery) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:deliveries_message_changelist") + f"?delivery__id__exact={obj.pk}"
        return format_html('<a href="{}">{} message(s)</a>', url, obj.messages.count())

    def save_model(self, request, obj, form, change):
        services.delivery_save(delivery=obj, actor=request.user, changed=form.changed_data)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or obj.status in services.EDITABLE_STATUSES)

    def _run(self, request, queryset, service, done: str) -> None:
        succeeded = 0
        for delivery in queryset:
            try:
                service(delivery_id=delivery.pk, actor=request.user)
                succeeded += 1
            except (NotFound, ServiceError, ValidationError) as exc:
                self.message_user(request, f"{delivery.label}: {getattr(exc, 'message', exc)}", messages.ERROR)
        if succeeded:
            self.message_user(request, f"{succeeded} deliver{'y' if succeeded == 1 else 'ies'} {done}.")

    @admin.action(description="Analyze the selected deliveries", permissions=["manage"])
    def analyze(self, request, queryset):
        self._run(request, queryset, services.delivery_analysis_request, "being analyzed")

    @admin.action(description="Send the selected deliveries", permissions=["manage"])
    def send(self, request, queryset):
        self._run(request, queryset, services.delivery_send, "sending")

    @admin.action(description="Pause the selected deliveries", permissions=["manage"])
    def pause(self, request, queryset):
        self._run(request, queryset, services.delivery_pause, "paused")

    @admin.action(description="Resume the selected deliveries", permissions=["manage"])
    def resume(self, request, queryset):
        self._run(request, queryset, services.delivery_resume, "resumed")

    @admin.action(description="Cancel the selected deliveries", permissions=["manage"])
    def cancel(self, request, queryset):
        self._run(request, queryset, services.delivery_cancel, "cancelled")


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["email", "delivery", "status", "failure_type", "failure_reason", "sent_at"]
    list_filter = ["status", "failure_type", "failure_reason", "email_format", "delivery"]
    search_fields = ["email", "smtp_message_id"]
    list_select_related = ["delivery"]
    raw_id_fields = ["delivery", "profile"]
    readonly_fields = [
        "delivery", "profile", "email", "email_format", "status", "failure_type", "failure_reason",
        "failure_detail", "smtp_message_id", "claimed_by", "claimed_at", "sent_at", "created_at",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
