"""Writes of the tracking app: a recipient's opt-out.

Events are stored by ``tracking.ingest``, user agents parsed by ``tracking.user_agents``.
"""
import uuid
from datetime import UTC, datetime

from django.db import DatabaseError, transaction

from profiles.services import profile_opt_out
from tracking import lookups
from tracking.ingest.event import new_event
from tracking.ingest.handoff import EventNotStored
from tracking.ingest.store import events_store
from tracking.models import EventType

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
