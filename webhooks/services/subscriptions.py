"""Subscriptions: created, changed, re-enabled, deleted and pinged by administrators."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from beacon.exceptions import NotFound, ServiceError
from webhooks import signing, transport
from webhooks.models import PING, EventType, Notification, Subscription
from webhooks.selectors import active_subscriptions_forget
from webhooks.services import outbox

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


def url_checked(url: object) -> str:
    try:
        transport.url_check(url, allow_private=settings.BEACON_WEBHOOK_ALLOW_PRIVATE_ADDRESSES)
    except transport.UrlRefused as refused:
        raise ServiceError(str(refused), fields={"url": [str(refused)]}) from None
    return url


def event_types_checked(event_types: object) -> list[str]:
    message = f"A non-empty list of event types, each one of: {', '.join(EventType.values)}."
    if not isinstance(event_types, list) or not event_types or len(event_types) > len(EventType.values):
        raise ServiceError(message, fields={"events": [message]})
    if any(not isinstance(value, str) or value not in EventType.values for value in event_types):
        raise ServiceError(message, fields={"events": [message]})
    return sorted(set(event_types))


def secret_checked(secret: object) -> str:
    try:
        signing.secret_bytes(secret)
    except signing.SecretInvalid as invalid:
        raise ServiceError(str(invalid), fields={"secret": [str(invalid)]}) from None
    return secret


def _locked(subscription_id: int) -> Subscription:
    try:
        return Subscription.objects.select_for_update().get(pk=subscription_id)
    except Subscription.DoesNotExist:
        raise NotFound("No such webhook.") from None


def subscription_create(
    *, url: str, event_types: list[str], secret: str | None = None, humans_only: bool = True, actor: User | None = None
) -> Subscription:
    """A new active subscription; without a secret, one is made. Its secret is on the returned object,
    which is the only time the API shows it."""
    subscription = Subscription(
        url=url_checked(url),
        event_types=event_types_checked(event_types),
        secret=signing.secret_generate() if secret in (None, "") else secret_checked(secret),
        humans_only=bool(humans_only),
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    with transaction.atomic():
        subscription.save()
        transaction.on_commit(active_subscriptions_forget)
    logger.info("webhook %s created for %s by %s", subscription.pk, subscription.url, actor)
    return subscription


def subscription_update(
    *,
    subscription_id: int,
    url: str | None = None,
    event_types: list[str] | None = None,
    secret: str | None = None,
    humans_only: bool | None = None,
    is_active: bool | None = None,
) -> Subscription:
    """Changes what is given. Activating a disabled subscription clears its failures: what it is still
    owed is sent again, from now."""
    with transaction.atomic():
        subscription = _locked(subscription_id)
        if url is not None:
            subscription.url = url_checked(url)
        if event_types is not None:
            subscription.event_types = event_types_checked(event_types)
        if secret is not None:
            subscription.secret = secret_checked(secret)
        if humans_only is not None:
            subscription.humans_only = bool(humans_only)
        if is_active is True and not subscription.is_active:
            subscription.is_active = True
            subscription.failure_count = 0
            subscription.disabled_at = None
            subscription.disabled_reason = ""
        elif is_active is False and subscription.is_active:
            subscription.is_active = False
            subscription.disabled_at = timezone.now()
            subscription.disabled_reason = "Disabled by an administrator."
        subscription.save()
        transaction.on_commit(active_subscriptions_forget)
    return subscription


def subscription_delete(*, subscription_id: int) -> None:
    """Deletes the subscription with its outbox and log."""
    with transaction.atomic():
        _locked(subscription_id).delete()
        transaction.on_commit(active_subscriptions_forget)


def subscription_ping(*, subscription_id: int) -> Notification:
    """Queues a `ping` message to the subscription, active or not: one attempt, logged like the others,
    which never counts toward disabling it."""
    with transaction.atomic():
        subscription = _locked(subscription_id)
        now = timezone.now()
        notification = outbox.notification_add(
            subscription=subscription, event_type=PING, occurred_at=now,
            data={"subscription_id": subscription.pk, "message": "Beacon says hello."},
        )
    return notification
