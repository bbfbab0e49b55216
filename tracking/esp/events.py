"""The edge: anymail's normalized tracking event becomes `EspEvent`, Beacon's one shape of it.

anymail already maps each provider's event types onto its own (`anymail.signals.EventType`); what it
leaves in the raw payload (`esp_event`) and Beacon needs is read here, per provider, and nowhere else:
a stable id of the event and whether a bounce was permanent. Every text is made storable (no NUL, no
lone surrogate) and cut to a bound, whatever the payload held.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from anymail.signals import AnymailTrackingEvent

from beacon.storable import storable
from deliveries.esp_reference import ESP_METADATA_KEY

# Bounds of what is kept from a payload: longer values are cut.
MAX_KEY_LENGTH = 200
MAX_REFERENCE_LENGTH = 64
MAX_MESSAGE_ID_LENGTH = 255
MAX_URL_LENGTH = 2000
MAX_USER_AGENT_LENGTH = 1000
MAX_DIAGNOSTIC_LENGTH = 2000


class EspEventNotRecorded(Exception):
    """The event could not be recorded (the database, or a fault of Beacon's): the webhook answers 503,
    and the provider sends it again later."""


@dataclass(frozen=True)
class EspEvent:
    """One provider event, in plain values. `type` is anymail's EventType value; `event_key` identifies
    the event at its provider, the same in every retry of the webhook; `message_reference` is Beacon's
    signed reference from the message's metadata, `header_message_id` the Message-ID the provider
    echoes (``<...>``), either possibly empty; `permanent` is a bounce's permanence when the provider
    says it (None: the diagnostic decides); `diagnostic` is the remote server's answer and the
    provider's description."""

    provider: str
    event_key: str
    type: str
    message_reference: str = ""
    header_message_id: str = ""
    at: datetime | None = None
    click_url: str = ""
    user_agent: str = ""
    permanent: bool | None = None
    diagnostic: str = ""
    reject_reason: str = ""
    # The address the event is about, as the provider says it.
    recipient: str = ""


def _text(value: object, limit: int) -> str:
    return storable(value)[:limit] if isinstance(value, str) else ""


def _mapping(value: object) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _payload_digest(payload: object) -> str:
    if isinstance(payload, Mapping) and hasattr(payload, "lists"):  # a form body (QueryDict)
        payload = sorted(payload.lists())
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8", "surrogatepass")).hexdigest()


def _event_key(event: AnymailTrackingEvent, provider: str) -> str:
    """The provider's id of the event, the same in every retry of its webhook.

    Mailgun's JSON webhooks: its event id, unique within a day, with the event's time (anymail's
    event_id there is the signature's token, new in each delivery of the webhook). Otherwise anymail's
    event_id, and where a provider gives none (Postmark's deliveries, opens, clicks and subscription
    changes) a digest of the payload, which a retry sends unchanged."""
    payload = event.esp_event
    if provider == "mailgun":
        data = _mapping(_mapping(payload).get("event-data"))
        if isinstance(data.get("id"), str) and data["id"]:
            return f"{data['id']}:{data.get('timestamp')}"[:MAX_KEY_LENGTH]
    if isinstance(event.event_id, (str, int)) and str(event.event_id):
        return str(event.event_id)[:MAX_KEY_LENGTH]
    return _payload_digest(payload)


def _permanent(event: AnymailTrackingEvent, provider: str) -> bool | None:
    """A bounce's permanence where the provider states it apart from the remote server's answer."""
    payload = _mapping(event.esp_event)
    if provider == "mailgun":
        severity = _mapping(payload.get("event-data")).get("severity")
        return {"permanent": True, "temporary": False}.get(severity) if isinstance(severity, str) else None
    if provider == "postmark" and payload.get("Type") == "SoftBounce":
        return False
    return None


def esp_event_from_anymail(event: AnymailTrackingEvent, esp_name: str) -> EspEvent:
    provider = str(esp_name).lower()
    metadata = _mapping(event.metadata)
    message_id = _text(event.message_id, MAX_MESSAGE_ID_LENGTH + 1)
    diagnostic = " ".join(
        text for text in (_text(event.mta_response, MAX_DIAGNOSTIC_LENGTH), _text(event.description, MAX_DIAGNOSTIC_LENGTH)) if text
    )
    return EspEvent(
        provider=provider,
        event_key=storable(_event_key(event, provider)),
        type=_text(event.event_type, 32),
        message_reference=_text(metadata.get(ESP_METADATA_KEY), MAX_REFERENCE_LENGTH + 1),
        header_message_id=message_id if message_id.startswith("<") and len(message_id) <= MAX_MESSAGE_ID_LENGTH else "",
        at=event.timestamp if isinstance(event.timestamp, datetime) and event.timestamp.tzinfo else None,
        click_url=_text(event.click_url, MAX_URL_LENGTH),
        user_agent=_text(event.user_agent, MAX_USER_AGENT_LENGTH),
        permanent=_permanent(event, provider),
        diagnostic=diagnostic[:MAX_DIAGNOSTIC_LENGTH],
        reject_reason=_text(event.reject_reason, 32),
        recipient=_text(event.recipient, 254),
    )

