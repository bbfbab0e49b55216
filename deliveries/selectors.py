"""Reads on deliveries, their delivery log and their links."""
from django.db.models import QuerySet

from deliveries.models import Delivery, DeliveryAuditEntry, Message, TrackedUrl


def delivery_list(*, status: str = "", search: str = "") -> QuerySet[Delivery]:
    deliveries = Delivery.objects.all()
    if status:
        deliveries = deliveries.filter(status=status)
    if search:
        deliveries = deliveries.filter(label__icontains=search)
    return deliveries.prefetch_related("lists")


def delivery_messages(*, delivery_id: int, status: str = "") -> QuerySet[Message]:
    messages = Message.objects.filter(delivery_id=delivery_id)
    if status:
        messages = messages.filter(status=status)
    return messages.order_by("id")


def delivery_tracked_urls(*, delivery_id: int) -> QuerySet[TrackedUrl]:
    return TrackedUrl.objects.filter(delivery_id=delivery_id).order_by("position", "id")


def delivery_audit(*, delivery_id: int) -> QuerySet[DeliveryAuditEntry]:
    return DeliveryAuditEntry.objects.filter(delivery_id=delivery_id).select_related("actor")
