"""The admin's webhooks: administrators only (the other roles hold no permission on these models).
Subscriptions are created and changed through the services, as in the API; the outbox and the attempt
log are records, read only."""
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from beacon.exceptions import ServiceError
from profiles.admin import ReadOnlyAdminMixin
from webhooks.models import Attempt, EventType, Notification, Subscription
from webhooks.services import subscriptions as services
from webhooks.transport import MAX_URL_LENGTH


def _checked(check, value):
    try:
        return check(value)
    except ServiceError as error:
        raise ValidationError(error.message) from None


class SubscriptionChangeForm(forms.ModelForm):
    # A plain field: the URL's rules are the service's (http or https, no private address), not URLField's.
    url = forms.CharField(label="URL", max_length=MAX_URL_LENGTH)
    event_types = forms.MultipleChoiceField(label="Events", choices=EventType.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = Subscription
        fields = ["url", "event_types", "humans_only", "is_active"]

    def clean_url(self) -> str:
        return _checked(services.url_checked, self.cleaned_data["url"])


class SubscriptionAddForm(SubscriptionChangeForm):
    secret = forms.CharField(
        required=False, max_length=100, strip=False,
        help_text="Leave empty to have one made. It is shown once, after saving.",
    )

    class Meta(SubscriptionChangeForm.Meta):
        fields = ["url", "event_types", "humans_only"]

    def clean_secret(self) -> str:
        secret = self.cleaned_data["secret"]
        return _checked(services.secret_checked, secret) if secret else ""


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["url", "event_types", "humans_only", "is_active", "failure_count", "disabled_at", "created_at"]
    list_filter = ["is_active", "humans_only"]
    search_fields = ["url"]
    readonly_fields = ["failure_count", "disabled_at", "disabled_reason", "created_by", "created_at", "updated_at"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = SubscriptionChangeForm if obj is not None else SubscriptionAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        form_fields = ["url", "event_types", "humans_only", "is_active"] if obj is not None else ["url", "event_types", "humans_only", "secret"]
        return form_fields + (self.readonly_fields if obj is not None else [])

    def save_model(self, request, obj: Subscription, form, change: bool) -> None:
        fields = form.cleaned_data
        if change:
            services.subscription_update(
                subscription_id=obj.pk, url=fields["url"], event_types=fields["event_types"],
                humans_only=fields["humans_only"], is_active=fields["is_active"],
            )
            return
        created = services.subscription_create(
            url=fields["url"], event_types=fields["event_types"], secret=fields["secret"] or None,
            humans_only=fields["humans_only"], actor=request.user,
        )
        obj.pk = created.pk
        obj._state.adding = False
        self.message_user(request, f"The webhook's signing secret, shown once: {created.secret}", messages.WARNING)

    def delete_model(self, request, obj: Subscription) -> None:
        services.subscription_delete(subscription_id=obj.pk)

    def delete_queryset(self, request, queryset) -> None:
        for subscription_id in queryset.values_list("pk", flat=True):
            services.subscription_delete(subscription_id=subscription_id)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["webhook_id", "subscription", "event_type", "status", "attempts", "next_attempt_at", "last_status_code", "created_at"]
    list_filter = ["status", "event_type"]
    raw_id_fields = ["subscription"]


@admin.register(Attempt)
class AttemptAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["attempted_at", "subscription", "notification", "number", "succeeded", "status_code", "response_ms"]
    list_filter = ["succeeded"]
    raw_id_fields = ["subscription", "notification"]
