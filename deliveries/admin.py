from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from accounts.admin import RoleAdminMixin
from beacon.exceptions import NotFound, ServiceError
from beacon.storable import storable
from deliveries import services
from deliveries.forms import add_service_errors
from deliveries.models import Delivery, DeliveryAuditEntry, Message, ReturnedMail, TrackedUrl
from profiles.admin import ReadOnlyAdminMixin

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


MAX_ID = 2**63 - 1
# The start of a returned message shown on its admin page; the whole kept copy is downloadable.
RAW_SHOWN_BYTES = 64 * 1024


@admin.register(ReturnedMail)
class ReturnedMailAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What came back to the bounce mailbox, kept whatever it was: the unmatched bounces are for the
    operators to look at. Administrators only (no other role holds a permission on it): the messages name
    recipients. Read-only; the raw message is shown escaped and downloadable, never rendered."""

    list_display = ["received_at", "kind", "outcome", "failure_type", "failure_reason", "subject", "sender", "message_link"]
    list_filter = ["outcome", "kind", "failure_type", "failure_reason", "received_at"]
    search_fields = ["subject", "sender", "sha256"]
    list_per_page = 100
    show_full_result_count = False
    fields = [
        "received_at", "kind", "outcome", "message_link", "failure_type", "failure_reason", "subject", "sender",
        "recipients", "matching_keys", "size", "sha256", "raw_download", "raw_text",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        # The raw copies can be hundreds of kilobytes each: loaded only where shown.
        return super().get_queryset(request).select_related("message").defer("raw")

    def get_urls(self):
        return [
            path("<int:pk>/raw/", self.admin_site.admin_view(self.raw_view), name="deliveries_returnedmail_raw"),
            *super().get_urls(),
        ]

    def raw_view(self, request, pk: int):
        if pk > MAX_ID:  # past what the database's id column holds: nothing there
            raise Http404
        returned = get_object_or_404(ReturnedMail, pk=pk)
        if not self.has_view_permission(request, returned):
            raise PermissionDenied
        response = HttpResponse(bytes(returned.raw), content_type="application/octet-stream")
        response["Content-Disposition"] = f'attachment; filename="returned-mail-{returned.pk}.eml"'
        response["X-Content-Type-Options"] = "nosniff"
        return response

    @admin.display(description="Message")
    def message_link(self, returned: ReturnedMail) -> str:
        if returned.message_id is None:
            return "-"
        url = reverse("admin:deliveries_message_change", args=[returned.message_id])
        return format_html('<a href="{}">{}</a>', url, returned.message)

    @admin.display(description="Failed recipients")
    def recipients(self, returned: ReturnedMail) -> str:
        recipients = returned.summary.get("recipients", [])
        if not recipients:
            return "-"
        rows = format_html_join("", "<li>{} {} {} / {}: {}</li>", (
            (r.get("address") or "(not named)", r.get("status", ""), r.get("failure_type", ""), r.get("failure_reason", ""), r.get("diagnostic", ""))
            for r in recipients
        ))
        return format_html("<ul>{}</ul>", rows)

    @admin.display(description="Matched by")
    def matching_keys(self, returned: ReturnedMail) -> str:
        verp = returned.summary.get("verp_message_id")
        message_id = returned.summary.get("original_message_id") or "-"
        return f"VERP token: {verp if verp is not None else '-'}; original Message-ID: {message_id}"

    @admin.display(description="Raw message")
    def raw_download(self, returned: ReturnedMail) -> str:
        url = reverse("admin:deliveries_returnedmail_raw", args=[returned.pk])
        kept = len(returned.raw)
        note = f" (the first {kept} of {returned.size} bytes)" if kept < returned.size else ""
        return format_html('<a href="{}" download>Download (.eml){}</a>', url, note)

    @admin.display(description="Raw message (start, as text)")
    def raw_text(self, returned: ReturnedMail) -> str:
        text = storable(bytes(returned.raw[:RAW_SHOWN_BYTES]).decode("utf-8", "replace"))
        return format_html("<pre class=\"returned-mail\">{}</pre>", text)
