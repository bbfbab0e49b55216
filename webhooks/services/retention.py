"""The outbox and its log are kept as long as the raw events they came from (BEACON_EVENT_RETENTION_DAYS):
their payloads name people."""
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from webhooks.models import Notification, NotificationStatus

PURGE_BATCH_SIZE = 5000


def notifications_purge(*, now: datetime | None = None) -> int:
    """Deletes settled notifications (delivered or given up) older than the retention, with their attempts,
    in bounded batches; one still owed is kept, whatever its age. Returns how many went."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.BEACON_EVENT_RETENTION_DAYS)
    settled = Notification.objects.filter(created_at__lt=cutoff).exclude(status=NotificationStatus.PENDING)
    deleted = 0
    while ids := list(settled.values_list("id", flat=True)[:PURGE_BATCH_SIZE]):
        Notification.objects.filter(id__in=ids).delete()
        deleted += len(ids)
    return deleted
