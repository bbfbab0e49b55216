"""The outbox: one Notification per (subscription, event), made in bulk from what the other apps
announce, and the sending queued once committed.

Receivers of `tracking.ingest.store.events_stored`, `deliveries.signals.delivery_finished` and
`deliveries.signals.messages_returned` (connected in webhooks.apps). Ingestion is a hot path: a batch
costs no query at all unless an active subscription wants one of its event types (the active
subscriptions are kept per process for a few seconds, `selectors.active_subscriptions`), and otherwise
one SELECT of the batch's events and a bulk INSERT of the rows owed.
"""
from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import redis
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from deliveries.models import Delivery, Message
from tracking.models import EventType as TrackingEventType
from tracking.models import TrackingEvent
from webhooks.models import EventType, Notification, Subscription
from webhooks.selectors import ActiveSubscription, active_subscriptions
from webhooks.tasks import send_due

logger = logging.getLogger(__name__)

INSERT_BATCH_SIZE = 1000
# Ids of events that have none of their own (a delivery's end), derived so that a repeat is the same event.
EVENT_NAMESPACE = uuid.UUID("6f1c3a52-3d1e-4c7e-9a57-2b8e0f4d5a10")
TRACKING_TYPES = {
    TrackingEventType.OPEN: EventType.OPEN,
    TrackingEventType.CLICK: EventType.CLICK,
    TrackingEventType.OPT_OUT: EventType.OPT_OUT,
}


def _body(event_type: str, occurred_at: datetime, data: dict) -> dict:
    """The JSON body of every message, as the Standard Webhooks spec suggests: type, timestamp, data."""
    return {"type": event_type, "timestamp": occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"), "data": data}


def _queue_sending() -> None:
    try:
        send_due.delay()
    except (KombuOperationalError, redis.RedisError, OSError):
        # The rows are committed: the periodic task sends them.
        logger.warning("Could not queue webhook sending; the periodic task will", exc_info=True)


def _insert(notifications: list[Notification]) -> None:
    """Inserts what is not already owed (one event is sent once) and queues the sending once committed."""
    if not notifications:
        return
    with transaction.atomic():
        Notification.objects.bulk_create(notifications, ignore_conflicts=True, batch_size=INSERT_BATCH_SIZE)
        transaction.on_commit(_queue_sending)


def notification_add(*, subscription: Subscription, event_type: str, occurred_at: datetime, data: dict) -> Notification:
    """One notification of an event of its own, due now (the test action's ping)."""
    notification = Notification.objects.create(
        subscription=subscription, event_id=uuid.uuid4(), event_type=event_type,
        payload=_body(event_type, occurred_at, data), next_attempt_at=timezone.now(),
    )
    transaction.on_commit(_queue_sending)
    return notification


def _owed(subscriptions: list[ActiveSubscription], event_type: str, is_machine: bool = False) -> list[ActiveSubscription]:
    return [
        subscription for subscription in subscriptions
        if event_type in subscription.event_types and not (is_machine and subscription.humans_only)
    ]


def tracking_events_enqueue(sender: object, *, event_ids: list[str], event_types: set[str], **kwargs: object) -> None:
    """Receiver of `events_stored`: the batch's opens, clicks and opt-outs that active subscriptions want."""
    subscriptions = active_subscriptions()
    if not subscriptions:
        return
    wanted = {tracking for tracking, ours in TRACKING_TYPES.items() if tracking in event_types and any(ours in s.event_types for s in subscriptions)}
    if not wanted:
        return
    events = TrackingEvent.objects.filter(event_id__in=event_ids, type__in=wanted).values_list(
        "event_id", "type", "logged_at", "delivery_id", "message_id", "profile_id", "profile__email",
        "tracked_url_id", "tracked_url__url", "tracked_url__label", "is_machine", "machine_reason",
    )
    now = timezone.now()
    owed = {(ours, is_machine): _owed(subscriptions, ours, is_machine) for ours in TRACKING_TYPES.values() for is_machine in (False, True)}
    notifications = []
    for (event_id, type_, logged_at, delivery_id, message_id, profile_id, email, url_id, url, url_label, is_machine, reason) in events:
        event_type = TRACKING_TYPES[type_]
        data = {
            "event_id": str(event_id), "delivery_id": delivery_id, "message_id": message_id,
            # Only when the recipient consented to tracking: their events are linked to them then.
            "profile_id": profile_id, "email": email,
            "is_machine": is_machine, "machine_reason": reason,
        }
        if event_type == EventType.CLICK:
            data.update(tracked_url_id=url_id, url=url, url_label=url_label)
        body = _body(event_type, logged_at, data)
        notifications.extend(
            Notification(subscription_id=s.id, event_id=event_id, event_type=event_type, payload=body, next_attempt_at=now)
            for s in owed[event_type, is_machine]
        )
    _insert(notifications)


def delivery_finished_enqueue(sender: object, *, delivery_id: int, **kwargs: object) -> None:
    """Receiver of `delivery_finished`: the delivery's counters at its end."""
    subscriptions = _owed(active_subscriptions(), EventType.DELIVERY_FINISHED)
    if not subscriptions:
        return
    delivery = Delivery.objects.filter(pk=delivery_id).values("label", "processed", "success", "errors", "finished_at").first()
    if delivery is None:
        return
    event_id = uuid.uuid5(EVENT_NAMESPACE, f"delivery_finished:{delivery_id}")
    body = _body(EventType.DELIVERY_FINISHED, delivery["finished_at"] or timezone.now(), {"delivery_id": delivery_id, **{
        key: delivery[key] for key in ("label", "processed", "success", "errors")
    }})
    now = timezone.now()
    _insert([
        Notification(subscription_id=s.id, event_id=event_id, event_type=EventType.DELIVERY_FINISHED, payload=body, next_attempt_at=now)
        for s in subscriptions
    ])


def messages_returned_enqueue(sender: object, *, returns: list, **kwargs: object) -> None:
    """Receiver of `deliveries.signals.messages_returned`: bounces that came back after sending and
    complaints (`deliveries.services.returns.ReturnedFailure`s), each message's once per kind."""
    subscriptions = active_subscriptions()
    owed = {kind: _owed(subscriptions, kind) for kind in (EventType.BOUNCE, EventType.COMPLAINT)}
    wanted = [returned for returned in returns if owed.get(returned.kind)]
    if not wanted:
        return
    messages = Message.objects.only("id", "delivery_id", "profile_id", "email").in_bulk({returned.message_id for returned in wanted})
    now = timezone.now()
    notifications = []
    for returned in wanted:
        message = messages.get(returned.message_id)
        if message is None:
            continue
        data = {
            "message_id": message.pk, "delivery_id": message.delivery_id, "profile_id": message.profile_id,
            "email": message.email,
        }
        if returned.kind == EventType.BOUNCE:
            data.update(failure_type=returned.failure_type, failure_reason=returned.failure_reason, detail=returned.detail)
        event_id = uuid.uuid5(EVENT_NAMESPACE, f"{returned.kind}:{message.pk}")
        body = _body(returned.kind, now, data)
        notifications.extend(
            Notification(subscription_id=s.id, event_id=event_id, event_type=returned.kind, payload=body, next_attempt_at=now)
            for s in owed[returned.kind]
        )
    _insert(notifications)
