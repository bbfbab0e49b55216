"""Reads of the delivery pages: the dashboard, the progress, the delivery log, the tracking events and
the audit trail; `delivery_get`, the delivery or NotFound, serves the reports too."""
from typing import Any

from django.db.models import Case, Q, QuerySet, Value, When
from django.db.models.functions import Lower

from beacon.exceptions import NotFound
from beacon.storable import fits_in
from deliveries.models import Delivery, DeliveryAuditEntry, DeliveryStatus, Message, TrackedUrl
from deliveries import selectors as deliveries_selectors
from deliveries.selectors import PERSONAL_AUDIT_DETAILS, delivery_expected_end
from reporting.percentages import percent
from tracking.models import TrackingEvent, UserAgent

# Audit details that name recipients: a proof's addresses and the profile it was personalized for
# (deliveries/services/proofs.py). Shown only to roles that read personal data.


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
    if not fits_in(Delivery, search, "label", "subject"):
        return []
    deliveries = Delivery.objects.all()
    if search:
        deliveries = deliveries.filter(Q(label__icontains=search) | Q(subject__icontains=search))
    if status:
        deliveries = deliveries.filter(status=status)
    return list(deliveries.order_by(*DASHBOARD_SORTS.get(sort, DASHBOARD_SORTS["newest"]))[:200])


def delivery_progress(*, delivery: Delivery) -> dict:
    """How far the delivery's sending is, or its analysis while it is analyzing (`percent` either way), and
    while it sends when it should end (`expected_end_at`, and as the page shows it, in UTC)."""
    analyzing = delivery.status == DeliveryStatus.ANALYZING
    expected_end = delivery_expected_end(delivery=delivery)
    return {
        "id": delivery.pk,
        "status": delivery.status,
        "status_display": delivery.get_status_display(),
        "to_deliver": delivery.to_deliver,
        "processed": delivery.processed,
        "success": delivery.success,
        "errors": delivery.errors,
        "analysis_progress": delivery.analysis_progress,
        "percent": delivery.analysis_progress if analyzing else percent(delivery.processed, delivery.to_deliver) or 0,
        "expected_end_at": expected_end.isoformat() if expected_end else None,
        "expected_end": f"{expected_end:%Y-%m-%d %H:%M} UTC" if expected_end else "",
    }


def delivery_messages(*, delivery_id: int, status: str = "", failure_type: str = "", failure_reason: str = "") -> QuerySet[Message]:
    """The delivery log page's messages: deliveries' own read of the log, with its filters."""
    return deliveries_selectors.delivery_messages(
        delivery_id=delivery_id, status=status, failure_type=failure_type, failure_reason=failure_reason
    )


def delivery_events(*, delivery_id: int, event_type: str = "") -> QuerySet[TrackingEvent]:
    events = TrackingEvent.objects.filter(delivery_id=delivery_id).order_by("-logged_at", "-id")
    return events.filter(type=event_type) if event_type else events


def delivery_audit(*, delivery_id: int) -> QuerySet[DeliveryAuditEntry]:
    return DeliveryAuditEntry.objects.filter(delivery_id=delivery_id).select_related("actor").order_by("-at", "-id")


def delivery_event_rows(*, events: list[TrackingEvent]) -> list[dict]:
    """A page of a delivery's events, each with its recipient's address, link and user agent.

    The address is shown only for an event that names its profile: an event of a profile without
    tracking consent is stored without one, and must not be traced back to the person through its
    message."""
    consenting_message_ids = {event.message_id for event in events if event.message_id and event.profile_id}
    emails = dict(Message.objects.filter(id__in=consenting_message_ids).values_list("id", "email"))
    urls = TrackedUrl.objects.in_bulk({event.tracked_url_id for event in events if event.tracked_url_id})
    agents = UserAgent.objects.in_bulk({event.user_agent_id for event in events if event.user_agent_id})
    return [
        {
            "event": event,
            "email": emails.get(event.message_id, "") if event.profile_id else "",
            "url": urls.get(event.tracked_url_id),
            "user_agent": agents.get(event.user_agent_id),
        }
        for event in events
    ]


def _detail_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key.replace('_', ' ')} {_detail_text(item)}" for key, item in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(_detail_text(item) for item in value) or "none"
    return "–" if value is None else str(value)


def audit_details(details: dict, *, personal_data: bool) -> list[tuple[str, str]]:
    """An audit entry's details as (label, text) pairs to read; without `personal_data`, the details
    naming recipients are left out."""
    return [
        (key.replace("_", " "), _detail_text(value))
        for key, value in details.items()
        if personal_data or key not in PERSONAL_AUDIT_DETAILS
    ]


def delivery_audit_rows(*, delivery_id: int, personal_data: bool) -> list[dict]:
    return [
        {"entry": entry, "details": audit_details(entry.details or {}, personal_data=personal_data)}
        for entry in delivery_audit(delivery_id=delivery_id)
    ]
