"""Writes of the tracking app: a recipient's opt-out, and a person's erasure.

Events are stored by ``tracking.ingest``, user agents parsed by ``tracking.user_agents``.
"""
import uuid
from datetime import UTC, datetime

from django.db import DatabaseError, transaction

from beacon.exceptions import NotFound
from deliveries.models import Message
from deliveries.services import profile_messages_anonymize
from profiles.models import Profile, ProfileErasure
from profiles.services import profile_opt_out
from profiles.services.erasure import profile_erase_records
from tracking import lookups
from tracking.ingest.event import new_event
from tracking.ingest.handoff import EventNotStored
from tracking.ingest.store import erasures_lock, events_anonymize, events_store
from tracking.models import EventType
from tracking.signals import profile_erasing

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
            # Before the profile's row lock, as an erase takes it (an erase waiting for that row while
            # this waited for the erase would be a deadlock).
            erasures_lock(exclusive=False)
            if message.profile_id:
                profile_opt_out(profile_id=message.profile_id, at=datetime.fromtimestamp(event.logged_at, tz=UTC))
            events_store([event])
    except DatabaseError as exc:
        raise EventNotStored from exc


def profile_erase(*, profile_id: int, actor=None) -> ProfileErasure:
    """Erases a person (the privacy erase of DESIGN.md): the profile and its list memberships go, the
    address goes from every message (kept as `erased@<domain>`), their events stay unlinked and without
    IP, and an address-free `ProfileErasure` records it. Every report is unchanged, before and after a
    recompute: nothing the consolidation or the delivery-log statistics count by is touched.

    Here because tracking is the highest app whose tables this changes but for the webhooks' outbox,
    which that app erases on the signal `profile_erasing`; each app's rows change through its own
    services, in one transaction under the profile's row lock (a second erase waits, then finds
    no profile: 404). Refused (409) while a delivery may still send to the person."""
    with transaction.atomic():
        erasures_lock(exclusive=True)
        profile = Profile.objects.select_for_update().filter(pk=profile_id).first()
        if profile is None:
            raise NotFound("No such profile.")
        message_ids = list(Message.objects.filter(profile_id=profile.pk).values_list("id", flat=True))
        addresses = {profile.email.lower()} | {
            email.lower() for email in Message.objects.filter(profile_id=profile.pk).values_list("email", flat=True).distinct()
        }
        messages = profile_messages_anonymize(profile_id=profile.pk, addresses=addresses)
        events = events_anonymize(profile_id=profile.pk, message_ids=message_ids, addresses=addresses)
        profile_erasing.send(sender=Profile, profile_id=profile.pk, message_ids=message_ids)
        erasure = profile_erase_records(
            profile=profile, addresses=addresses, actor=actor, messages_anonymized=messages, events_anonymized=events
        )
    # This process's cached message lookups still name the profile; other processes' expire within their TTL.
    transaction.on_commit(lookups.clear_caches)
    return erasure
