"""The tracking event as it travels from a handler to the database: one shape, ``Event``.

A handler builds it with ``new_event``; the hand-off, the journal, the stream, the spool and the store
all pass this one type on. Between processes it travels as ``to_wire()``: one line of compact JSON
with two-letter keys, in this order. Journals, stream entries and spool files outlive a deploy, so the
bytes stay what earlier versions wrote and ``from_wire`` reads theirs:

    {"id":"<32 hex digits>","ty":"click","at":1700000000.123,"d":1,"m":2,"p":3,"u":4,
     "ua":"Mozilla/5.0 ...","ip":"192.0.2.0","b":"<browser id>","pg":"","am":null,"mr":""}
"""
import json
import time
from typing import NamedTuple

from tracking.randomness import random_bytes

MAX_USER_AGENT_LENGTH = 1000
MAX_PAGE_URL_LENGTH = 2000

# Made once: json.dumps builds a new encoder on every call given separators, and this runs per click.
_encode = json.JSONEncoder(separators=(",", ":")).encode


class Event(NamedTuple):
    """One tracking event, in plain values (a NamedTuple: the cheapest record to build per click)."""

    type: str  # an EventType value
    logged_at: float  # Unix time, seconds
    delivery_id: int | None
    message_id: int | None
    profile_id: int | None  # None when the recipient's tracking consent is off
    tracked_url_id: int | None
    user_agent: str  # the raw header, cut to MAX_USER_AGENT_LENGTH
    ip: str | None  # anonymized already
    browser_id: str  # from the browser-id cookie, or ""
    page_url: str  # web_page events only, cut to MAX_PAGE_URL_LENGTH
    amount: str | None  # web_page events only: a transaction's amount as the page sent it
    machine_reason: str  # a tracking.machine reason, or "" for a person
    event_id: str  # 32 hex digits: the stored event is idempotent on it

    def to_wire(self) -> bytes:
        """The event as one line of JSON (without the newline), byte for byte what earlier versions wrote."""
        (type_, logged_at, delivery, message, profile, url, user_agent, ip, browser, page, amount, reason, event_id) = self
        return _encode(
            {
                "id": event_id,
                "ty": type_,
                "at": logged_at,
                "d": delivery,
                "m": message,
                "p": profile,
                "u": url,
                "ua": user_agent,
                "ip": ip,
                "b": browser,
                "pg": page,
                "am": amount,
                "mr": reason,
            }
        ).encode()

    @classmethod
    def from_wire(cls, line: bytes | str) -> "Event":
        """The event of a line written by ``to_wire`` (or by hand, keys in any order; the optional ones
        may be missing or null). Raises ValueError if the line is not an event."""
        try:
            data = json.loads(line)
            return cls(
                data["ty"],
                float(data["at"]),
                data.get("d"),
                data.get("m"),
                data.get("p"),
                data.get("u"),
                data.get("ua") or "",
                data.get("ip") or None,
                data.get("b") or "",
                data.get("pg") or "",
                data.get("am"),
                data.get("mr") or "",
                data["id"],
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a tracking event: {line!r:.200}") from exc


def new_event_id(now: float) -> str:
    """A UUIDv7-style id (millisecond time first, then random bits): time-ordered ids keep inserts
    into the unique index on event_id near its right edge instead of all over the tree."""
    value = (int(now * 1000) << 80) | int.from_bytes(random_bytes(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return f"{value:032x}"


def new_event(
    *,
    type: str,
    delivery_id: int | None,
    message_id: int | None,
    profile_id: int | None,
    tracked_url_id: int | None = None,
    user_agent: str = "",
    ip: str | None = None,
    browser_id: str = "",
    page_url: str = "",
    amount: str | None = None,
    machine_reason: str = "",
    event_id: str | None = None,
) -> Event:
    """An event happening now; `ip` must be anonymized already. Its id is a new one unless given (an
    id derived from what happened makes a repeated action count once)."""
    now = time.time()
    return Event(
        type,
        now,
        delivery_id,
        message_id,
        profile_id,
        tracked_url_id,
        user_agent[:MAX_USER_AGENT_LENGTH],
        ip,
        browser_id,
        page_url[:MAX_PAGE_URL_LENGTH],
        amount,
        machine_reason,
        new_event_id(now) if event_id is None else event_id,
    )
