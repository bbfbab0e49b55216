import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import MessageFactory
from tracking.ingest.event import new_event
from tracking.ingest.store import events_store
from tracking.services import profile_erase
from webhooks.models import Attempt, Notification, NotificationStatus
from webhooks.services import outbox
from webhooks.services.retention import notifications_purge
from webhooks.services.subscriptions import subscription_create

pytestmark = pytest.mark.django_db


def test_settled_notifications_past_the_retention_go_with_their_attempts(settings):
    settings.BEACON_EVENT_RETENTION_DAYS = 30
    subscription = subscription_create(url="http://127.0.0.1:9/hook", event_types=["open"])
    now = timezone.now()

    def notification(status: str, age_days: int) -> Notification:
        made = Notification.objects.create(
            subscription=subscription, event_id=uuid.uuid4(),
            event_type="open", payload={}, status=status, next_attempt_at=now,
        )
        Notification.objects.filter(pk=made.pk).update(created_at=now - timedelta(days=age_days))
        Attempt.objects.create(notification=made, subscription=subscription, number=1, attempted_at=now, succeeded=False)
        return made

    old_delivered = notification(NotificationStatus.DELIVERED, 31)
    old_failed = notification(NotificationStatus.FAILED, 31)
    old_pending = notification(NotificationStatus.PENDING, 31)
    recent = notification(NotificationStatus.DELIVERED, 29)

    assert notifications_purge(now=now) == 2
    assert set(Notification.objects.values_list("id", flat=True)) == {old_pending.pk, recent.pk}
    assert not Attempt.objects.filter(notification_id__in=[old_delivered.pk, old_failed.pk]).exists()
    assert Attempt.objects.count() == 2


def test_erasing_a_person_erases_what_the_webhooks_hold_on_them(django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr(outbox, "_queue_sending", lambda: None)
    subscription_create(url="http://127.0.0.1:9/hook", event_types=["open", "click"])
    erased, kept = MessageFactory(), MessageFactory()
    unlinked = MessageFactory(profile=erased.profile)
    with django_capture_on_commit_callbacks(execute=True):
        events_store([
            new_event(type="open", delivery_id=erased.delivery_id, message_id=erased.pk, profile_id=erased.profile_id),
            # Without tracking consent, an event names the message only.
            new_event(type="open", delivery_id=unlinked.delivery_id, message_id=unlinked.pk, profile_id=None),
            new_event(type="open", delivery_id=kept.delivery_id, message_id=kept.pk, profile_id=kept.profile_id),
        ])
    assert Notification.objects.count() == 3

    profile_erase(profile_id=erased.profile_id)

    [left] = Notification.objects.all()
    assert left.payload["data"]["email"] == kept.profile.email
