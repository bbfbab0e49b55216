"""Reads of the webhooks app."""
import threading
import time
from typing import NamedTuple

from django.db.models import QuerySet

from webhooks.models import Attempt, Notification, Subscription

ACTIVE_TTL_SECONDS = 10.0


class ActiveSubscription(NamedTuple):
    id: int
    event_types: frozenset[str]
    humans_only: bool


_active_lock = threading.Lock()
_active: tuple[float, list[ActiveSubscription]] | None = None


def active_subscriptions() -> list[ActiveSubscription]:
    """The active subscriptions, kept per process for ACTIVE_TTL_SECONDS: ingestion asks once per batch,
    and most of the time the answer is none."""
    global _active
    with _active_lock:
        if _active is not None and _active[0] > time.monotonic():
            return _active[1]
    found = [
        ActiveSubscription(pk, frozenset(types), humans_only)
        for pk, types, humans_only in Subscription.objects.filter(is_active=True).values_list("id", "event_types", "humans_only")
    ]
    with _active_lock:
        _active = (time.monotonic() + ACTIVE_TTL_SECONDS, found)
    return found


def active_subscriptions_forget() -> None:
    """Forgets this process's copy (other processes see a change within ACTIVE_TTL_SECONDS)."""
    global _active
    with _active_lock:
        _active = None


def subscription_list() -> QuerySet[Subscription]:
    return Subscription.objects.order_by("id")


def subscription_attempts(*, subscription_id: int) -> QuerySet[Attempt]:
    """The subscription's delivery log, newest first."""
    return (
        Attempt.objects.filter(subscription_id=subscription_id)
        .select_related("notification")
        .order_by("-attempted_at", "-id")
    )


def subscription_pending_count(*, subscription_id: int) -> int:
    return Notification.objects.filter(subscription_id=subscription_id, status="pending").count()
