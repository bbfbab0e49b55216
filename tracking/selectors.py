"""Reads of tracking events: the profile Tracking tab, the events API, the admin, a person's export; and the state of
ingestion for the Settings page (the stream's backlog, spool files waiting, events past an id)."""
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import redis
from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet

from deliveries.personalization import render_label, render_link_url
from beacon.exceptions import NotFound
from deliveries.models import Delivery, Message, TrackingMode
from profiles.models import AddressFailure, AddressRelease, ListMembership, Profile
from tracking.ingest.journal import REPLAY_SUFFIX
from tracking.ingest.redis_stream import redis_client
from tracking.ingest.spool import SPOOL_SUFFIX
from tracking.models import TrackingEvent

# The sort keys the profile Tracking tab offers, and the columns they sort on.
PROFILE_TRACKING_ORDERINGS = {
    "logged_at": ("logged_at", "id"),
    "-logged_at": ("-logged_at", "-id"),
    "type": ("type", "-logged_at", "-id"),
    "-type": ("-type", "-logged_at", "-id"),
    "delivery": ("delivery__label", "-logged_at", "-id"),
    "-delivery": ("-delivery__label", "-logged_at", "-id"),
}


def events_filter(
    *,
    delivery_id: int | None = None,
    profile_id: int | None = None,
    types: list[str] | None = None,
    machine: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    existing_deliveries_only: bool = False,
) -> QuerySet[TrackingEvent]:
    """Events matching the filters, with their delivery, URL and user agent joined in."""
    events = TrackingEvent.objects.select_related("delivery", "tracked_url", "user_agent", "profile")
    if delivery_id is not None:
        events = events.filter(delivery_id=delivery_id)
    if profile_id is not None:
        events = events.filter(profile_id=profile_id)
    if types:
        events = events.filter(type__in=types)
    if machine is not None:
        events = events.filter(is_machine=machine)
    if since is not None:
        events = events.filter(logged_at__gte=since)
    if until is not None:
        events = events.filter(logged_at__lt=until)
    if existing_deliveries_only:
        # Events keep no foreign-key constraint: a deleted delivery leaves them behind.
        events = events.filter(Exists(Delivery.objects.filter(pk=OuterRef("delivery_id"))))
    return events


def profile_tracking(
    *,
    profile_id: int,
    types: list[str] | None = None,
    machine: bool | None = None,
    delivery_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    ordering: str = "-logged_at",
) -> QuerySet[TrackingEvent]:
    """Every event of a profile across the deliveries that still exist [Campaign: Tracking tab]."""
    return events_filter(
        profile_id=profile_id,
        types=types,
        machine=machine,
        delivery_id=delivery_id,
        since=since,
        until=until,
        existing_deliveries_only=True,
    ).order_by(*PROFILE_TRACKING_ORDERINGS[ordering])


def event_url(event: TrackingEvent, profile: Profile | None) -> str:
    """What the event was about: the visited page for web events, else the clicked link's URL as it was
    for that recipient (a personalized link's placeholders filled with `profile`'s values: the events of
    someone without tracking consent name nobody, so theirs stay empty), never template code."""
    if event.page_url:
        return event.page_url
    tracked_url = event.tracked_url if event.tracked_url_id else None
    # The opt-out and mirror pseudo-links store the name of a variable, not a URL.
    if tracked_url is None or tracked_url.mode in (TrackingMode.OPT_OUT, TrackingMode.MIRROR):
        return ""
    if tracked_url.is_personalized:
        return render_link_url(tracked_url.url, profile) or ""
    return tracked_url.url


def event_label(event: TrackingEvent, profile: Profile | None) -> str:
    """The clicked link's label, as that recipient saw it."""
    tracked_url = event.tracked_url if event.tracked_url_id else None
    return render_label(tracked_url.label, profile) if tracked_url is not None else ""


class StreamBacklog(NamedTuple):
    # Entries in the stream: the consumer deletes an entry once its event is stored, so all are waiting.
    length: int
    # Of those, the ones a consumer has read and not yet stored and acknowledged (a dead one's, until reclaimed).
    pending: int


def event_stream_backlog() -> StreamBacklog | None:
    """The event stream's backlog; None when there is no stream (events are written directly).
    Raises `redis.RedisError` when Redis cannot be reached."""
    url = settings.BEACON_EVENT_REDIS_URL
    if not url:
        return None
    client = redis_client(url)
    length = client.xlen(settings.BEACON_EVENT_STREAM)
    try:
        pending = client.xpending(settings.BEACON_EVENT_STREAM, settings.BEACON_EVENT_GROUP)["pending"]
    except redis.ResponseError as error:
        # No consumer has run yet: neither the stream nor its group exists, and nothing is pending.
        if "NOGROUP" not in str(error):
            raise
        pending = 0
    return StreamBacklog(length=length, pending=pending)


def spool_files_waiting() -> int:
    """Files in `BEACON_SPOOL_DIR` whose events wait for the spool replay: spooled events, and the
    journal segments kept for replay."""
    directory = Path(settings.BEACON_SPOOL_DIR)
    if not directory.is_dir():
        return 0
    return sum(1 for path in directory.iterdir() if path.suffix in (SPOOL_SUFFIX, REPLAY_SUFFIX))


def events_count_after(*, event_id: int, limit: int) -> int:
    """How many events have an id above `event_id`, counted up to `limit` (a bounded index range scan)."""
    return TrackingEvent.objects.filter(id__gt=event_id).order_by()[:limit].count()


# What a person's export names of each of their messages and events (every column that is about them).
_EXPORT_MESSAGE_FIELDS = (
    "id", "delivery_id", "delivery__label", "delivery__subject", "email", "email_format", "status", "failure_type",
    "failure_reason", "failure_detail", "smtp_message_id", "sent_at", "created_at",
)
_EXPORT_EVENT_FIELDS = (
    "event_id", "type", "logged_at", "delivery_id", "message_id", "tracked_url__url", "tracked_url__label",
    "user_agent__raw", "ip", "browser_id", "page_url", "amount", "is_machine", "machine_reason",
)


def profile_export(*, profile_id: int) -> dict:
    """Everything Beacon holds on the person (the privacy export of DESIGN.md): the profile with its
    bounce, quarantine and opt-out fields, their list memberships, the bounces and complaints the
    quarantine rule counted and the releases from it, their messages and every event of
    the profile or of its messages (a person without tracking consent has events on their messages
    only). One query per part, whatever the number of rows; NotFound if there is no such profile."""
    profile = Profile.objects.filter(pk=profile_id).values().first()
    if profile is None:
        raise NotFound("No such profile.")
    messages = Message.objects.filter(profile_id=profile_id)
    events = TrackingEvent.objects.filter(Q(profile_id=profile_id) | Q(message_id__in=messages.values("id")))
    return {
        "profile": profile,
        "lists": list(
            ListMembership.objects.filter(profile_id=profile_id)
            .order_by("list__name")
            .values("list_id", "list__name", "added_at")
        ),
        "address_failures": list(
            AddressFailure.objects.filter(profile_id=profile_id)
            .order_by("occurred_at", "id")
            .values("failure_type", "reason", "occurred_at", "event_key", "message_id", "delivery_id", "status_set")
        ),
        "address_releases": list(
            AddressRelease.objects.filter(profile_id=profile_id)
            .order_by("released_at", "id")
            .values("released_at", "released_by__username", "previous_status", "previous_reason")
        ),
        "messages": list(messages.order_by("id").values(*_EXPORT_MESSAGE_FIELDS)),
        "events": list(events.order_by("logged_at", "id").values(*_EXPORT_EVENT_FIELDS)),
    }
