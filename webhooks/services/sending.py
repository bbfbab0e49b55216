"""Sending the outbox: claim due notifications, POST each signed, log the attempt, back off or give up,
and disable a subscription after BEACON_WEBHOOK_MAX_ATTEMPTS failed attempts in a row.

A notification is claimed before it is sent (a compare-and-set on `claimed_by`, under
`SELECT ... FOR UPDATE SKIP LOCKED` where the database has it), so two workers, or a task delivered
twice, never send it both. A sender that dies holding a claim leaves it to expire (`claim_lease`);
the notification is then sent again with the same `webhook-id`, which a receiver may use to skip it.
Within one batch, the first failure of a subscription puts its other notifications off to the same
next attempt, untried: a receiver that is down is not hammered.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from webhooks import signing, transport
from webhooks.models import PING, Attempt, Notification, NotificationStatus, Subscription
from webhooks.selectors import active_subscriptions_forget

logger = logging.getLogger(__name__)

BATCH_SIZE = 20
# Seconds to wait after the nth failed attempt (the last repeats): 5 s, 30 s, 2 min, 10 min, 1 h, 3 h, 6 h.
BACKOFF_SECONDS = (5, 30, 120, 600, 3600, 3 * 3600, 6 * 3600)


def backoff(failed_attempts: int) -> timedelta:
    return timedelta(seconds=BACKOFF_SECONDS[min(failed_attempts, len(BACKOFF_SECONDS)) - 1])


def claim_lease() -> timedelta:
    """Long enough for a whole batch at the worst (connect and read timeouts for each), plus a margin."""
    return timedelta(seconds=BATCH_SIZE * 2 * settings.BEACON_WEBHOOK_TIMEOUT_SECONDS + 60)


def _due(now: datetime):
    return Notification.objects.filter(
        Q(subscription__is_active=True) | Q(event_type=PING),
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
        status=NotificationStatus.PENDING, next_attempt_at__lte=now,
    )


def _claim(*, now: datetime, limit: int) -> tuple[str, list[Notification]]:
    token = uuid.uuid4().hex
    with transaction.atomic():
        candidates = _due(now).order_by("next_attempt_at", "id")
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True, of=("self",))
        ids = list(candidates.values_list("id", flat=True)[:limit])
        # The condition again: whoever claimed a row meanwhile keeps it.
        _due(now).filter(id__in=ids).update(claimed_by=token, claimed_until=now + claim_lease())
    claimed = list(Notification.objects.filter(claimed_by=token).select_related("subscription").order_by("subscription_id", "id"))
    return token, claimed


def _send(notification: Notification) -> transport.Outcome:
    body = json.dumps(notification.payload, separators=(",", ":")).encode()
    headers = signing.signed_headers(
        secret=notification.subscription.secret, webhook_id=notification.header_id,
        timestamp=int(time.time()), body=body,
    )
    return transport.post(
        notification.subscription.url, body=body, headers=headers,
        timeout=settings.BEACON_WEBHOOK_TIMEOUT_SECONDS,
        allow_private=settings.BEACON_WEBHOOK_ALLOW_PRIVATE_ADDRESSES,
    )


def _disable(subscription: Subscription, *, now: datetime, error: str) -> None:
    subscription.is_active = False
    subscription.disabled_at = now
    subscription.disabled_reason = (
        f"Disabled after {subscription.failure_count} failed attempts in a row; the last: {error or 'no answer'}"
    )[:2000]
    logger.warning("webhook %s (%s) disabled: %s", subscription.pk, subscription.url, subscription.disabled_reason)


def _record(notification: Notification, outcome: transport.Outcome, *, token: str, now: datetime) -> datetime | None:
    """Logs the attempt and moves the notification on; returns its next attempt time if it failed and
    is to be tried again, else None."""
    is_ping = notification.event_type == PING
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().get(pk=notification.subscription_id)
        current = Notification.objects.select_for_update().get(pk=notification.pk)
        current.attempts += 1
        attempt = Attempt(
            notification=current, subscription=subscription, number=current.attempts, attempted_at=now,
            succeeded=outcome.succeeded, status_code=outcome.status_code, error=outcome.error,
            response_ms=outcome.response_ms,
        )
        attempt.save()
        if current.claimed_by != token:
            # Our claim expired and another sender took it over: the attempt is logged, the rest is theirs.
            Notification.objects.filter(pk=current.pk).update(attempts=current.attempts)
            return None
        current.last_status_code = outcome.status_code
        current.last_error = outcome.error
        current.last_response_ms = outcome.response_ms
        current.claimed_by = ""
        current.claimed_until = None
        next_attempt = None
        max_attempts = settings.BEACON_WEBHOOK_MAX_ATTEMPTS
        if outcome.succeeded:
            current.status = NotificationStatus.DELIVERED
            current.delivered_at = now
            if not is_ping:
                subscription.failure_count = 0
        elif is_ping or current.attempts >= max_attempts:
            current.status = NotificationStatus.FAILED
        else:
            next_attempt = current.next_attempt_at = now + backoff(current.attempts)
        if not outcome.succeeded and not is_ping:
            subscription.failure_count += 1
            if subscription.is_active and subscription.failure_count >= max_attempts:
                _disable(subscription, now=now, error=outcome.error)
        current.save()
        subscription.save(update_fields=["failure_count", "is_active", "disabled_at", "disabled_reason", "updated_at"])
    if not subscription.is_active:
        active_subscriptions_forget()
    return next_attempt


def _put_off(notification: Notification, *, token: str, until: datetime) -> None:
    Notification.objects.filter(pk=notification.pk, claimed_by=token).update(
        next_attempt_at=until, claimed_by="", claimed_until=None
    )


def notifications_send_due(*, now: datetime | None = None, limit: int = BATCH_SIZE) -> int:
    """Sends one batch of due notifications; returns how many were claimed (a full batch: call again)."""
    now = now or timezone.now()
    token, claimed = _claim(now=now, limit=limit)
    failing: dict[int, datetime] = {}
    for notification in claimed:
        if notification.subscription_id in failing and notification.event_type != PING:
            _put_off(notification, token=token, until=failing[notification.subscription_id])
            continue
        next_attempt = _record(notification, _send(notification), token=token, now=now)
        if next_attempt is not None:
            failing[notification.subscription_id] = next_attempt
    return len(claimed)
