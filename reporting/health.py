"""Reads of Beacon's running state for the Settings page: the public tracking host, the signing keys
(by fingerprint, never the key) and the health of the event pipeline, from a click to a report row
(the stream's backlog, spool files waiting for replay, events not yet consolidated), and the bounce
mailbox's last read with the unmatched bounces waiting for an operator."""
import datetime as dt
import hashlib
from typing import NamedTuple

import redis
from django.conf import settings

from beacon.mailbox_url import mailbox_url_parse
from deliveries import selectors as deliveries_selectors
from reporting.consolidation.pointer import STATE_NAME
from reporting.models import ConsolidationGap, ConsolidationState
from tracking import selectors as tracking_selectors
from tracking.selectors import StreamBacklog

# Counting the events past the pointer stops here: a backlog this deep is news enough, and a count of
# millions of rows (a database that was never consolidated) would slow the page down.
LAG_COUNT_LIMIT = 100_000


class SigningKey(NamedTuple):
    # The first 8 hex digits of the key's SHA-256; its first two are the key id inside every token
    # (deliveries/tokens.py), so a token names the key it was signed with.
    fingerprint: str
    signs: bool


class StreamState(NamedTuple):
    configured: bool
    backlog: StreamBacklog | None
    error: str


class ConsolidationLag(NamedTuple):
    # Events stored but not yet counted in the reports, up to LAG_COUNT_LIMIT.
    waiting: int
    waiting_more: bool
    # Id ranges skipped because not yet committed when last seen; normally empty or short-lived.
    open_gaps: int
    last_run_at: dt.datetime | None


def signing_keys() -> list[SigningKey]:
    """`BEACON_SIGNING_KEYS` in order: the first signs new links, all of them verify."""
    return [
        SigningKey(fingerprint=hashlib.sha256(key.encode()).hexdigest()[:8], signs=index == 0)
        for index, key in enumerate(settings.BEACON_SIGNING_KEYS)
    ]


def event_stream_state() -> StreamState:
    if not settings.BEACON_EVENT_REDIS_URL:
        return StreamState(configured=False, backlog=None, error="")
    try:
        return StreamState(configured=True, backlog=tracking_selectors.event_stream_backlog(), error="")
    except redis.RedisError as error:
        return StreamState(configured=True, backlog=None, error=str(error) or type(error).__name__)


def consolidation_lag() -> ConsolidationLag:
    state = ConsolidationState.objects.filter(name=STATE_NAME).first()
    pointer = state.pointer if state else 0
    waiting = tracking_selectors.events_count_after(event_id=pointer, limit=LAG_COUNT_LIMIT + 1)
    return ConsolidationLag(
        waiting=min(waiting, LAG_COUNT_LIMIT),
        waiting_more=waiting > LAG_COUNT_LIMIT,
        open_gaps=ConsolidationGap.objects.count(),
        last_run_at=state.consolidated_at if state else None,
    )


class BounceMailboxHealth(NamedTuple):
    # The mailbox as shown to people (never its password); "" when BEACON_BOUNCE_MAILBOX is empty.
    mailbox: str
    last_run_at: dt.datetime | None
    last_counts: dict
    last_error: str
    unmatched: int


def bounce_mailbox_health() -> BounceMailboxHealth:
    state = deliveries_selectors.bounce_mailbox_state()
    return BounceMailboxHealth(
        mailbox=mailbox_url_parse(settings.BEACON_BOUNCE_MAILBOX).shown if settings.BEACON_BOUNCE_MAILBOX else "",
        last_run_at=state.last_run_at if state else None,
        last_counts=state.last_counts if state else {},
        last_error=state.last_error if state else "",
        unmatched=deliveries_selectors.returned_mail_unmatched_count(),
    )


def pipeline_health() -> dict:
    return {
        "stream": event_stream_state(),
        "spool_files": tracking_selectors.spool_files_waiting(),
        "consolidation": consolidation_lag(),
        "bounces": bounce_mailbox_health(),
    }
