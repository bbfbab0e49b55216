"""A delivery's counters (to deliver, success, errors, processed) rebuilt from its delivery log."""
from django.db.models import Count, Q

from deliveries.models import Delivery, Message, MessageStatus


def delivery_counters_recount(*, delivery: Delivery) -> Delivery:
    """Sets the delivery's counters as its messages say. Sending maintains them as it goes; this rebuilds them
    (reporting's "Recompute delivery and tracking indicators"). The caller holds the delivery's row lock."""
    counts = Message.objects.filter(delivery_id=delivery.pk).aggregate(
        to_deliver=Count("id", filter=~Q(status=MessageStatus.IGNORED)),
        success=Count("id", filter=Q(status=MessageStatus.SENT)),
        errors=Count("id", filter=Q(status=MessageStatus.FAILED)),
    )
    delivery.to_deliver = counts["to_deliver"]
    delivery.success = counts["success"]
    delivery.errors = counts["errors"]
    delivery.processed = counts["success"] + counts["errors"]
    delivery.save(update_fields=["to_deliver", "success", "errors", "processed", "updated_at"])
    return delivery
