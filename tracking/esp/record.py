"""`esp_event_record`: a provider's event applied to its message, through the services that own each change.

| provider event (anymail) | what Beacon does |
|---|---|
| delivered, queued, sent, deferred, autoresponded, subscribed, failed, unknown | nothing: the message counted as sent when the ESP took it; a deferral is a delay; the rest says nothing of the message or the address |
| bounced | the message fails and its address's failure counts (hard or soft, reason by `deliveries.bounces.classify`): `deliveries.services.returns_record` |
| rejected (the ESP refused to send) | the same, soft unless the ESP calls the address invalid or bounced before; a refusal for an earlier complaint is a complaint, for an earlier unsubscribe an opt-out |
| complained | a complaint (the address is denylisted): `returns_record` |
| unsubscribed | the person's opt-out and one opt_out event per message: `tracking.services.message_opt_out` |
| opened | an open event, unless Beacon's own pixel was in the message (which counts the same reading) |
| clicked | a click event on the delivery's link of that URL, unless the URL is one of Beacon's tracking links (which counts the same click) |

The message is found by the signed reference in its metadata (`deliveries.esp_reference`); an event
without one, by the Message-ID Beacon gave the message. A reference that does not verify names no
message. Events for no known message are logged and change nothing.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

from anymail.signals import EventType as EspType, RejectReason
from django.conf import settings

from deliveries.bounces.classify import ENHANCED_STATUS_RE, classify
from deliveries.esp_reference import esp_reference_message_id
from deliveries.models import Message, TrackedUrl
from deliveries.services import ReturnedFailure, returned_unmatched_keep, returns_record
from deliveries.services.returns import BOUNCE, COMPLAINT
from tracking import lookups, machine
from tracking.esp.events import EspEvent
from tracking.ingest.event import new_event
from tracking.ingest.handoff import event_submit
from tracking.models import EventType
from tracking.services import message_opt_out

logger = logging.getLogger(__name__)

# What esp_event_record did (the webhook's receiver logs it).
RECORDED = "recorded"
IGNORED = "ignored"
UNKNOWN_MESSAGE = "unknown_message"
# An open or click that Beacon's own tracking counts already.
COUNTED_BY_BEACON = "counted_by_beacon"

# The event id of an open or click derives from the provider and its id of the event: a replay is
# stored once.
ESP_EVENT_NAMESPACE = uuid.UUID("3b0f6a8e-5d1c-4f7e-9a42-6c2d8e1b7f05")
# The provider events that change something; the others are ignored (the module's table).
_HANDLED = {EspType.BOUNCED, EspType.REJECTED, EspType.COMPLAINED, EspType.UNSUBSCRIBED, EspType.OPENED, EspType.CLICKED}
# The events that say a message came back (a bounce, a refusal, a complaint).
_RETURNS = {EspType.BOUNCED, EspType.REJECTED, EspType.COMPLAINED}
# anymail's reject reasons that say the address itself is bad (a hard failure); any other refusal is soft.
_ADDRESS_REJECTIONS = {RejectReason.INVALID, RejectReason.BOUNCED}
_SMTP_REPLY_CODE_RE = re.compile(r"\b([45])\d\d\b")
# Beacon's own tracking links (tracking/urls.py): a click on one is counted by Beacon's endpoint.
_BEACON_LINK_PREFIXES = ("/r/", "/u/", "/m/", "/o/")


def _message_id(event: EspEvent) -> int | None:
    if event.message_reference:
        return esp_reference_message_id(event.message_reference)
    if event.header_message_id:
        return Message.objects.filter(smtp_message_id=event.header_message_id).values_list("pk", flat=True).first()
    return None


def _bounce_classified(event: EspEvent, *, permanent: bool | None) -> tuple[str, str]:
    """(failure type, reason) of a bounce, by the one table the bounce mailbox uses too."""
    match = ENHANCED_STATUS_RE.search(event.diagnostic)
    enhanced = match.group(0) if match else ""
    if permanent is not None:
        status_class = 5 if permanent else 4
    elif enhanced:
        status_class = int(enhanced[0])
    else:
        code = _SMTP_REPLY_CODE_RE.search(event.diagnostic)
        status_class = int(code.group(1)) if code else 5
    return classify(status_class, enhanced, event.diagnostic)


def _is_complaint(event: EspEvent) -> bool:
    return event.type == EspType.COMPLAINED or (event.type == EspType.REJECTED and event.reject_reason == RejectReason.SPAM)


def _failure(event: EspEvent) -> tuple[str, str]:
    """(failure type, reason) of a bounce or a rejection."""
    permanent = event.permanent
    if event.type == EspType.REJECTED:
        permanent = event.reject_reason in _ADDRESS_REJECTIONS
    return _bounce_classified(event, permanent=permanent)


def _unmatched_kept(event: EspEvent) -> None:
    """A bounce or complaint for no known message is kept for the operators, as the mailbox keeps its own."""
    if _is_complaint(event):
        returned_unmatched_keep(source=event.provider, event_key=event.event_key, kind=COMPLAINT, recipient=event.recipient, detail=event.diagnostic, received_at=event.at)
        return
    if event.type == EspType.REJECTED and event.reject_reason == RejectReason.UNSUBSCRIBED:
        return
    failure_type, reason = _failure(event)
    returned_unmatched_keep(
        source=event.provider, event_key=event.event_key, kind=BOUNCE, recipient=event.recipient,
        failure_type=failure_type, failure_reason=reason, detail=event.diagnostic, received_at=event.at,
    )


def _returned(message: lookups.MessageInfo, event: EspEvent) -> None:
    if _is_complaint(event):
        returns_record([ReturnedFailure(message_id=message.id, kind=COMPLAINT, detail=event.diagnostic)])
        return
    failure_type, reason = _failure(event)
    returns_record([
        ReturnedFailure(message_id=message.id, kind=BOUNCE, failure_type=failure_type, failure_reason=reason, detail=event.diagnostic)
    ])


def _logged_at(event: EspEvent, message: lookups.MessageInfo) -> float:
    """When the provider says it happened, kept between the message's sending and now."""
    now = time.time()
    if event.at is None:
        return now
    at = event.at.timestamp()
    if message.sent_at is not None:
        at = max(at, message.sent_at.timestamp())
    return min(at, now)


def _machine_reason(event: EspEvent, event_type: str, logged_at: float, message: lookups.MessageInfo) -> str:
    """Beacon's rules on what the provider saw. A missing user agent proves nothing here: it is the
    provider's report that lacks it, not the request."""
    user_agent = event.user_agent
    if event_type == EventType.OPEN and user_agent.strip() == machine.APPLE_MPP_USER_AGENT:
        return machine.REASON_APPLE_MPP
    if user_agent and machine.is_scanner_user_agent(user_agent):
        return machine.REASON_SCANNER
    if event_type == EventType.CLICK and message.sent_at is not None:
        if datetime.fromtimestamp(logged_at, tz=UTC) - message.sent_at < timedelta(seconds=settings.BEACON_MACHINE_CLICK_SECONDS):
            return machine.REASON_TOO_FAST
    return ""


def _is_beacon_link(url: str) -> bool:
    public = settings.BEACON_PUBLIC_URL
    return url.startswith(public) and url[len(public):].startswith(_BEACON_LINK_PREFIXES)


def _engagement(message: lookups.MessageInfo, event: EspEvent) -> str:
    """An open or click stored as a tracking event, unless Beacon's own tracking counts it."""
    if event.type == EspType.OPENED:
        event_type = EventType.OPEN
        if Message.objects.filter(pk=message.id, delivery__track_opens=True).exists():
            return COUNTED_BY_BEACON
        tracked_url_id = None
    else:
        event_type = EventType.CLICK
        if _is_beacon_link(event.click_url):
            return COUNTED_BY_BEACON
        tracked_url_id = (
            TrackedUrl.objects.filter(delivery_id=message.delivery_id, url=event.click_url).values_list("pk", flat=True).first()
            if event.click_url else None
        )
    logged_at = _logged_at(event, message)
    tracking_event = new_event(
        type=event_type,
        delivery_id=message.delivery_id,
        message_id=message.id,
        profile_id=message.event_profile_id,
        tracked_url_id=tracked_url_id,
        user_agent=event.user_agent,
        machine_reason=_machine_reason(event, event_type, logged_at, message),
        event_id=uuid.uuid5(ESP_EVENT_NAMESPACE, f"{event.provider}:{event.event_key}").hex,
    )._replace(logged_at=logged_at)
    event_submit(tracking_event)
    return RECORDED


def esp_event_record(event: EspEvent) -> str:
    """Applies one provider event to its message (see the module's table); returns the outcome.

    Safe to repeat: each change it makes is idempotent. Raises what its services raise when the
    database cannot take the change (the webhook then answers 503 and the provider retries)."""
    if event.type not in _HANDLED:
        return IGNORED
    message_id = _message_id(event)
    message = lookups.message_info(message_id) if message_id is not None else None
    if message is None:
        logger.warning(
            "%s %s event %s for no known message (reference %r, Message-ID %r)",
            event.provider, event.type, event.event_key, event.message_reference[:80], event.header_message_id[:80],
        )
        if event.type in _RETURNS:
            _unmatched_kept(event)
        return UNKNOWN_MESSAGE
    if event.type in (EspType.OPENED, EspType.CLICKED):
        return _engagement(message, event)
    if event.type == EspType.UNSUBSCRIBED or (event.type == EspType.REJECTED and event.reject_reason == RejectReason.UNSUBSCRIBED):
        message_opt_out(message_id=message.id, tracked_url_id=None, user_agent=event.user_agent, ip=None)
        return RECORDED
    _returned(message, event)
    return RECORDED
