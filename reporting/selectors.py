"""Reads of the delivery pages: the dashboard, the progress, the delivery log, the tracking events and
the audit trail; `delivery_get`, the delivery or NotFound, serves the reports too."""
from django.db.models import Case, Q, QuerySet, Value, When
from django.db.models.functions import Lower

from beacon.exceptions import NotFound
from deliveries.models import Delivery, DeliveryAuditEntry, DeliveryStatus, Message
from reporting.percentages import percent
from tracking.models import TrackingEvent


def delivery_get(*, delivery_id: int) -> Delivery:
    delivery = Delivery.objects.filter(pk=delivery_id).first()
    if delivery is None:
        raise NotFound("No such delivery.")
    return delivery


# A delivery's status in the order of its life (draft first, then analyzing, ready, sending, ...), not A-Z.
_STATUS_ORDER = Case(*[When(status=status, then=Value(index)) for index, status in enumerate(DeliveryStatus.values)])
# The dashboard's sort orders, by the name its `?sort=` takes.
DASHBOARD_SORTS = {
    "newest": ("-created_at", "-id"),
    "label": (Lower("label"), "id"),
    "status": (_STATUS_ORDER, "-created_at", "-id"),
}


def deliveries_list(*, search: str = "", status: str = "", sort: str = "newest") -> list[Delivery]:
    """The dashboard's deliveries (at most 200): label or subject containing `search`, of `status`."""
    deliveries = Delivery.objects.all()
    if search:
        deliveries = deliveries.filter(Q(label__icontains=search) | Q(subject__icontains=search))
    if status:
        deliveries = deliveries.filter(status=status)
    return list(deliveries.order_by(*DASHBOARD_SORTS.get(sort, DASHBOARD_SORTS["newest"]))[:200])


def delivery_progress(*, delivery: Delivery) -> dict:
    return {
        "id": delivery.pk,
        "status": delivery.status,
        "status_display": delivery.get_status_display(),
        "to_deliver": delivery.to_deliver,
        "processed": delivery.processed,
        "success": delivery.success,
        "errors": delivery.errors,
        "percent": percent(delivery.processed, delivery.to_deliver) or 0,
    }


def delivery_messages(*, delivery_id: int, status: str = "") -> QuerySet[Message]:
    messages = Message.objects.filter(delivery_id=delivery_id).order_by("id")
    return messages.filter(status=status) if status else messages


def delivery_events(*, delivery_id: int, event_type: str = "") -> QuerySet[TrackingEvent]:
    events = TrackingEvent.objects.filter(delivery_id=delivery_id).order_by("-logged_at", "-id")
    return events.filter(type=event_type) if event_type else events


def delivery_audit(*, delivery_id: int) -> QuerySet[DeliveryAuditEntry]:
    return DeliveryAuditEntry.objects.filter(delivery_id=delivery_id).select_related("actor").order_by("-at", "-id")
