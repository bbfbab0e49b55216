"""Scheduled deliveries: a ready delivery waits for its time, then starts sending by itself.

`delivery_schedule` takes an analyzed (ready) delivery, or a scheduled one whose time changes; a draft is
refused, as sending it is: the analysis is what says whom it goes to and whether it may go, and a
delivery scheduled unanalyzed could only fail at its time, with nobody watching. `delivery_unschedule`
puts it back to ready; `delivery_cancel` works while it waits.

`deliveries_start_due` (Celery beat, every minute) starts each scheduled delivery whose time has come,
however late (workers down at the time: it starts when they are back). Exactly once: each start is a
status transition scheduled → sending under the delivery's row lock, so a second beat, a second worker
or a redelivered task finds it sending and leaves it. Every function takes `now`, for the tests' clock.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from beacon.exceptions import TransitionNotAllowed
from deliveries.models import Delivery, DeliveryStatus
from deliveries.services.lifecycle import Actor, AuditAction, _audit, _locked, _queue_send_batch, _transition

# Further ahead than this is a typo (a year for a month), not a plan.
MAX_SCHEDULE_AHEAD = timedelta(days=366)
# Scheduled deliveries started per run of the scheduler: a bounded batch (the next run takes the rest).
START_BATCH = 100


def _checked_time(at: datetime, now: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValidationError({"at": ["Give the time with its UTC offset, e.g. 2026-12-01T09:00:00+01:00."]})
    if at <= now:
        raise ValidationError({"at": [f"This time is past (it is now {now:%Y-%m-%d %H:%M} UTC): choose a later one."]})
    if at > now + MAX_SCHEDULE_AHEAD:
        raise ValidationError({"at": [f"At most {MAX_SCHEDULE_AHEAD.days} days ahead."]})
    return at.astimezone(UTC)


def delivery_schedule(*, delivery_id: int, at: datetime, actor: Actor = None, now: datetime | None = None) -> Delivery:
    """Schedules a ready delivery (or moves a scheduled one) to start sending at `at`, stored in UTC."""
    now = now or timezone.now()
    at = _checked_time(at, now)
    with transaction.atomic():
        delivery = _locked(delivery_id)
        if delivery.status in (DeliveryStatus.DRAFT, DeliveryStatus.ANALYZING):
            raise TransitionNotAllowed("Analyze the delivery before scheduling it.")
        previous = delivery.scheduled_at if delivery.status == DeliveryStatus.SCHEDULED else None
        if previous is None:
            _transition(delivery, DeliveryStatus.SCHEDULED, action="schedule")
        delivery.scheduled_at = at
        delivery.save(update_fields=["status", "scheduled_at", "updated_at"])
        details = {"at": at.isoformat()} | ({"previous_at": previous.isoformat()} if previous else {})
        _audit(delivery, AuditAction.SCHEDULED, actor, **details)
    return delivery


def delivery_unschedule(*, delivery_id: int, actor: Actor = None) -> Delivery:
    """A scheduled delivery back to ready: it starts only when sent or scheduled again."""
    with transaction.atomic():
        delivery = _locked(delivery_id)
        if delivery.status != DeliveryStatus.SCHEDULED:
            raise TransitionNotAllowed(f"Cannot unschedule a delivery that is {delivery.get_status_display().lower()}.")
        _transition(delivery, DeliveryStatus.READY, action="unschedule")
        previous = delivery.scheduled_at
        delivery.scheduled_at = None
        delivery.save(update_fields=["status", "scheduled_at", "updated_at"])
        _audit(delivery, AuditAction.UNSCHEDULED, actor, previous_at=previous.isoformat() if previous else None)
    return delivery


def deliveries_start_due(*, now: datetime | None = None) -> int:
    """Starts sending each scheduled delivery whose time is `now` or before; returns how many it started."""
    now = now or timezone.now()
    due = (
        Delivery.objects.filter(status=DeliveryStatus.SCHEDULED, scheduled_at__lte=now)
        .order_by("scheduled_at", "pk")
        .values_list("pk", flat=True)[:START_BATCH]
    )
    started = 0
    for pk in list(due):
        with transaction.atomic():
            delivery = Delivery.objects.select_for_update().filter(pk=pk).first()
            # Read again under the lock: another scheduler, or the marketer, may have acted meanwhile.
            if delivery is None or delivery.status != DeliveryStatus.SCHEDULED or delivery.scheduled_at > now:
                continue
            _transition(delivery, DeliveryStatus.SENDING, action="start")
            delivery.sending_started_at = now
            delivery.save(update_fields=["status", "sending_started_at", "updated_at"])
            _audit(
                delivery, AuditAction.SENT, None, to_deliver=delivery.to_deliver,
                scheduled_at=delivery.scheduled_at.isoformat(), late_seconds=int((now - delivery.scheduled_at).total_seconds()),
            )
            _queue_send_batch(delivery.pk)
            started += 1
    return started
