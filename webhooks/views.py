"""The webhooks pages (`/webhooks/`): administrators only, as the API."""
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import action_required
from accounts.roles import MANAGE_WEBHOOKS
from beacon.exceptions import ServiceError
from webhooks import selectors
from webhooks.forms import SubscriptionForm
from webhooks.models import Subscription
from webhooks.services import subscriptions as services

ATTEMPTS_SHOWN = 50


def _list_page(request: HttpRequest, form: SubscriptionForm, *, created: Subscription | None = None, status: int = 200) -> HttpResponse:
    return render(request, "webhooks/webhook_list.html", {
        "subscriptions": selectors.subscription_list(), "form": form, "created": created,
        "nav_current": {"settings": "page"},
    }, status=status)


@action_required(MANAGE_WEBHOOKS)
@never_cache
@require_http_methods(["GET", "POST"])
def webhook_list(request: HttpRequest) -> HttpResponse:
    """The subscriptions, with any disabling notice, and the form that adds one (its secret shown once,
    in the answer to the POST only)."""
    if request.method == "GET":
        return _list_page(request, SubscriptionForm())
    form = SubscriptionForm(request.POST)
    if form.is_valid():
        fields = form.cleaned_data
        try:
            created = services.subscription_create(
                url=fields["url"], event_types=fields["events"], secret=fields["secret"] or None,
                humans_only=fields["humans_only"], actor=request.user,
            )
        except ServiceError as error:
            for field, problems in error.fields.items():
                for problem in problems:
                    form.add_error(field if field in form.fields else None, problem)
        else:
            return _list_page(request, SubscriptionForm(), created=created)
    return _list_page(request, form, status=400)


@action_required(MANAGE_WEBHOOKS)
@require_http_methods(["GET"])
def webhook_detail(request: HttpRequest, subscription_id: int) -> HttpResponse:
    """A subscription and its delivery log (the latest attempts)."""
    subscription = get_object_or_404(Subscription, pk=subscription_id)
    return render(request, "webhooks/webhook_detail.html", {
        "subscription": subscription,
        "attempts": selectors.subscription_attempts(subscription_id=subscription.pk)[:ATTEMPTS_SHOWN],
        "pending": selectors.subscription_pending_count(subscription_id=subscription.pk),
        "nav_current": {"settings": "page"},
    })


@action_required(MANAGE_WEBHOOKS)
@require_POST
def webhook_test(request: HttpRequest, subscription_id: int) -> HttpResponse:
    subscription = get_object_or_404(Subscription, pk=subscription_id)
    services.subscription_ping(subscription_id=subscription.pk)
    messages.success(request, "A ping is on its way; its outcome shows in the log below.")
    return redirect("webhooks:detail", subscription_id=subscription.pk)


@action_required(MANAGE_WEBHOOKS)
@require_POST
def webhook_active(request: HttpRequest, subscription_id: int) -> HttpResponse:
    """Enables (clearing its failures) or disables the subscription, as the POST's `active` says."""
    subscription = get_object_or_404(Subscription, pk=subscription_id)
    active = request.POST.get("active") == "true"
    services.subscription_update(subscription_id=subscription.pk, is_active=active)
    messages.success(request, "Webhook enabled: what it is owed is sent again." if active else "Webhook disabled.")
    return redirect("webhooks:detail", subscription_id=subscription.pk)


@action_required(MANAGE_WEBHOOKS)
@require_POST
def webhook_delete(request: HttpRequest, subscription_id: int) -> HttpResponse:
    subscription = get_object_or_404(Subscription, pk=subscription_id)
    services.subscription_delete(subscription_id=subscription.pk)
    messages.success(request, "Webhook deleted, with its log.")
    return redirect("webhooks:list")
