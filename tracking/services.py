"""Writes of the tracking app: a recipient's opt-out, and retention's deletion of raw events.

Events are stored by ``tracking.ingest``, user agents parsed by ``tracking.user_agents``.
"""
import uuid
from datetime import UTC, datetime, timedelta

from django.db import DatabaseError, transaction
from django.db.models import F

from profiles.services import profile_opt_out
from tracking import lookups
from tracking.ingest.event import new_event
from tracking.ingest.handoff import EventNotStored
from tracking.ingest.store import events_store
from tracking.models import EventType, TrackingEvent

# Opt-out event ids derive from the message, so a message is counted as opted out once, however
# often its recipient (or their mail client) posts the one-click unsubscribe.
OPT_OUT_EVENT_NAMESPACE = uuid.UUID("6f1f3a52-8a2e-4c4e-9d0a-4b5e3c1d7a10")


def message_opt_out(*, message_id: int, tracked_url_id: int | None, user_agent: str, ip: str | None) -> None:
    """Denylists the message's profile for email and records one opt_out event for the message."""
    message = lookups.message_info(message_id)
    if message is None:
        return
    event = new_event(
        type=EventType.OPT_OUT,
        delivery_id=message.delivery_id,
        message_id=message.id,
        profile_id=message.event_profile_id,
        tracked_url_id=tracked_url_id,
        user_agent=user_agent,
        ip=ip,
        event_id=uuid.uuid5(OPT_OUT_EVENT_NAMESPACE, str(message.id)).hex,
    )
    try:
        with transaction.atomic():
            if message.profile_id:
                profile_opt_out(profile_id=message.profile_id, at=datetime.fromtimestamp(event.logged_at, tz=UTC))
            events_store([event])
    except DatabaseError as exc:
        raise EventNotStored from exc


def events_move(*, delivery_id: int, logged_from: datetime, logged_to: datetime, by: timedelta) -> int:
    """Moves the logged time of the delivery's events logged in [logged_from, logged_to] by `by` (demo data,
    whose activity is made now and moved to when it plays); returns how many moved."""
    return TrackingEvent.objects.filter(
        delivery_id=delivery_id, logged_at__range=(logged_from, logged_to)
    ).update(logged_at=F("logged_at") + by)


def events_delete(*, event_ids: list[int]) -> int:
    """Deletes raw events by id: retention's purge, which chose them (consolidated, older than the retention
    period). Returns how many were deleted."""
    deleted, _ = TrackingEvent.objects.filter(id__in=event_ids).delete()
    return deleted
