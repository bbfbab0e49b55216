"""The delivery actions of the marketer's delivery page (analyze, send, pause, resume, cancel): each button
posts here and calls the delivery service, as the API and the admin do."""
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from accounts.decorators import action_required
from accounts.roles import MANAGE
from beacon.exceptions import ServiceError
from deliveries import services
from deliveries.models import DeliveryStatus

DELIVERY_ACTIONS = {
    "analyze": services.delivery_analyze,
    "send": services.delivery_send,
    "pause": services.delivery_pause,
    "resume": services.delivery_resume,
    "cancel": services.delivery_cancel,
}
# Which buttons a delivery page offers in each status; the services enforce the transitions anyway.
ACTIONS_BY_STATUS = {
    DeliveryStatus.DRAFT: ("analyze", "cancel"),
    DeliveryStatus.READY: ("analyze", "send", "cancel"),
    DeliveryStatus.SENDING: ("pause", "cancel"),
    DeliveryStatus.PAUSED: ("resume", "cancel"),
}


@action_required(MANAGE)
@require_POST
def delivery_action(request: HttpRequest, delivery_id: int, action: str) -> HttpResponse:
    if action not in DELIVERY_ACTIONS:
        raise Http404("No such action.")
    try:
        DELIVERY_ACTIONS[action](delivery_id=delivery_id, actor=request.user)
    except ServiceError as error:
        messages.error(request, error.message)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Delivery: {action} done.")
    # Back to the delivery's page (the reporting app draws it), by its route name: no import of reporting.
    return redirect("reporting:delivery-summary", delivery_id=delivery_id)
