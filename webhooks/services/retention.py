"""The outbox and its log name people: kept as long as the raw events they came from
(BEACON_EVENT_RETENTION_DAYS), and a person's erased with them."""
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
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


def profile_notifications_erase(sender: object, *, profile_id: int, message_ids: list[int], **kwargs: object) -> int:
    """Receiver of `tracking.signals.profile_erasing`, in the erasure's transaction: every notification
    about the person (theirs, or one of their messages'), sent or still owed, goes with its attempts."""
    about = Q(payload__data__profile_id=profile_id)
    if message_ids:
        about |= Q(payload__data__message_id__in=message_ids)
    deleted, _ = Notification.objects.filter(about).delete()
    return deleted
