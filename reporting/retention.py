"""Retention: raw events older than `BEACON_EVENT_RETENTION_DAYS` are deleted once consolidated."""
import datetime as dt

from django.conf import settings
from django.utils import timezone

from deliveries.models import Delivery
from reporting.consolidation.pointer import consolidation_lock, events_consolidate
from reporting.models import ConsolidationGap, DeliveryReportState
from tracking.models import TrackingEvent
from tracking.ingest.store import events_delete

PURGE_BATCH_SIZE = 10_000
PURGE_MAX_BATCHES = 100


def events_purge_expired(*, batch_size: int = PURGE_BATCH_SIZE, max_batches: int = PURGE_MAX_BATCHES) -> int:
    """Deletes raw events older than `BEACON_EVENT_RETENTION_DAYS`, only once consolidated, in bounded
    batches. Rollups keep their figures; the deliveries concerned are marked so no recompute loses them.
    """
    cutoff = timezone.now() - dt.timedelta(days=settings.BEACON_EVENT_RETENTION_DAYS)
    events_consolidate()
    purged = 0
    for _ in range(max_batches):
        with consolidation_lock(wait=True) as state:
            gaps = list(ConsolidationGap.objects.values_list("first_id", "last_id"))
            candidates = TrackingEvent.objects.filter(logged_at__lt=cutoff, id__lte=state.pointer).order_by("id")
            rows = [
                (pk, delivery_id)
                for pk, delivery_id in candidates.values_list("id", "delivery_id")[:batch_size]
                if not any(first <= pk <= last for first, last in gaps)
            ]
            if not rows:
                break
            events_delete(event_ids=[pk for pk, _ in rows])
            for delivery_id in {delivery_id for _, delivery_id in rows if delivery_id is not None}:
                if Delivery.objects.filter(pk=delivery_id).exists():
                    DeliveryReportState.objects.update_or_create(
                        delivery_id=delivery_id, defaults={"events_purged_before": cutoff}
                    )
        purged += len(rows)
        if len(rows) < batch_size:
            break
    return purged
