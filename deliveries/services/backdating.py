"""Demo data: a delivery as if created, analyzed and sent some time ago."""
from datetime import timedelta

from django.db import transaction
from django.db.models import F

from deliveries.models import Delivery, DeliveryAuditEntry, Message


@transaction.atomic
def delivery_backdate(*, delivery_id: int, by: timedelta) -> None:
    """Moves every time of the delivery, its messages and its audit entries `by` into the past."""
    Delivery.objects.filter(pk=delivery_id).update(
        created_at=F("created_at") - by,
        analyzed_at=F("analyzed_at") - by,
        sending_started_at=F("sending_started_at") - by,
        finished_at=F("finished_at") - by,
    )
    Message.objects.filter(delivery_id=delivery_id).update(
        created_at=F("created_at") - by, claimed_at=F("claimed_at") - by, sent_at=F("sent_at") - by
    )
    DeliveryAuditEntry.objects.filter(delivery_id=delivery_id).update(at=F("at") - by)
