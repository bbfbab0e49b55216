"""Writes of the tracking app: opt-out, storing events, parsing user agents."""
import uuid
from datetime import UTC, datetime

from django.db import DatabaseError, transaction
from django.utils import timezone
from ua_parser import parse as parse_user_agent

from profiles.services import profile_opt_out
from tracking import lookups
from tracking.ingest import EventNotStored, event_payload, events_store, spool_replay, stream_consume
from tracking.models import DeviceType, EventType, TrackingEvent, UserAgent

# Opt-out event ids derive from the message, so a message is counted as opted out once, however
# often its recipient (or their mail client) posts the one-click unsubscribe.
OPT_OUT_EVENT_NAMESPACE = uuid.UUID("6f1f3a52-8a2e-4c4e-9d0a-4b5e3c1d7a10")


def message_opt_out(*, message_id: int, tracked_url_id: int | None, user_agent: str, ip: str | None) -> None:
    """Denylists the message's profile for email and records one opt_out event for the message."""
    message = lookups.message_info(message_id)
    if message is None:
        return
    event = event_payload(
        type=EventType.OPT_OUT,
        delivery_id=message.delivery_id,
        message_id=message.id,
        profile_id=message.event_profile_id,
        tracked_url_id=tracked_url_id,
        user_agent=user_agent,
        ip=ip,
    )
    event["id"] = uuid.uuid5(OPT_OUT_EVENT_NAMESPACE, str(message.id)).hex
    try:
        with transaction.atomic():
            if message.profile_id:
                profile_opt_out(profile_id=message.profile_id, at=datetime.fromtimestamp(event["at"], tz=UTC))
            events_store([event])
    except DatabaseError as exc:
        raise EventNotStored from exc


def events_consume(*, consumer: str, max_seconds: float) -> int:
    return stream_consume(consumer=consumer, max_seconds=max_seconds)


def events_replay_spool() -> int:
    return spool_replay()


def _device_type(result) -> str:
    device = (result.device.family if result.device else "") or ""
    os_family = (result.os.family if result.os else "") or ""
    raw = result.string.lower()
    if device == "Spider":
        return DeviceType.BOT
    if "ipad" in raw or "tablet" in raw or (os_family == "Android" and "mobile" not in raw):
        return DeviceType.TABLET
    if os_family in {"iOS", "Android", "Windows Phone", "BlackBerry OS"} or "mobile" in raw:
        return DeviceType.MOBILE
    if os_family in {"Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora"}:
        return DeviceType.DESKTOP
    return DeviceType.OTHER


def user_agents_parse(*, ids: list[int] | None = None, limit: int = 1000) -> int:
    """Fills the parsed fields of unparsed user agents (the given ones, else up to `limit`)."""
    from tracking.machine import is_scanner_user_agent

    queryset = UserAgent.objects.filter(parsed_at__isnull=True)
    if ids is not None:
        queryset = queryset.filter(pk__in=ids)
    agents = list(queryset.order_by("id")[:limit])
    now = timezone.now()
    for agent in agents:
        result = parse_user_agent(agent.raw)
        agent.os_family = ((result.os.family if result.os else "") or "Other")[:100]
        agent.browser_family = ((result.user_agent.family if result.user_agent else "") or "Other")[:100]
        agent.device_family = ((result.device.family if result.device else "") or "Other")[:100]
        agent.device_type = _device_type(result)
        agent.is_bot = agent.device_type == DeviceType.BOT or is_scanner_user_agent(agent.raw)
        agent.parsed_at = now
    UserAgent.objects.bulk_update(
        agents, ["os_family", "browser_family", "device_family", "device_type", "is_bot", "parsed_at"], batch_size=500
    )
    return len(agents)


def events_delete(*, event_ids: list[int]) -> int:
    """Deletes raw events by id: retention's purge, which chose them (consolidated, older than the retention
    period). Returns how many were deleted."""
    deleted, _ = TrackingEvent.objects.filter(id__in=event_ids).delete()
    return deleted
