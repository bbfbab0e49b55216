"""What a web process does with an event: hand it on durably, or refuse to acknowledge it.

This is the one description of the fallback chain; other places point here. ``event_submit`` hands an
``Event`` on, in this order of preference:

1. with ``BEACON_EVENT_REDIS_URL`` (by default ``REDIS_URL``) and ``BEACON_EVENT_JOURNAL`` (the default),
   one line written to the process's journal (``tracking.ingest.journal``) in ``BEACON_SPOOL_DIR``; a
   thread ships the lines every ``BEACON_EVENT_JOURNAL_SHIP_MS`` onto the stream in one pipelined round
   trip, else (Redis down) into the database in one insert, else keeps them for ``spool_replay``, which
   also takes the journals of processes that died before shipping;
2. with Redis but no journal (or a journal that cannot be written), XADD to the stream
   ``BEACON_EVENT_STREAM`` (``tracking.ingest.redis_stream``). Either way a consumer
   (``tracking.ingest.consumer``, run by the Celery task ``tracking.consume_events`` or
   ``manage.py tracking_consume``) reads batches in a consumer group, inserts them in one statement,
   commits, then XACKs (and XDELs) them; a batch whose insert failed is retried by its consumer first
   thing, and entries a dead consumer left pending are reclaimed with XAUTOCLAIM after
   ``BEACON_STREAM_RECLAIM_IDLE_MS``;
3. without Redis, or when Redis cannot be reached, a direct insert into the database
   (``tracking.ingest.store``); after a Redis failure, handlers skip Redis for REDIS_RETRY_SECONDS;
4. when the database cannot be reached either, one JSON line appended and fsync'd to a spool file in
   ``BEACON_SPOOL_DIR`` (``tracking.ingest.spool``), replayed later by ``spool_replay`` (task
   ``tracking.replay_spool``).

Only if all fail does ``event_submit`` raise ``EventNotStored``, and the handler answers 503 instead
of acknowledging. Every insert is ``ON CONFLICT (event_id) DO NOTHING``, so a batch delivered twice (a
consumer killed between commit and XACK, a journal or spool replayed twice) is stored once.

For the stream to keep what it acknowledged across a Redis restart, Redis must persist it
(``appendonly yes``). On a power cut, ``appendfsync everysec`` loses up to about a second, and the
journal what it had not shipped (one interval); for no loss at all, ``appendfsync always`` and no journal.
"""
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import redis
from django.conf import settings
from django.db import DatabaseError, connection, connections

from tracking import lookups
from tracking.ingest import store
from tracking.ingest.event import Event
from tracking.ingest.journal import EventJournal
from tracking.ingest.redis_stream import StreamUnavailable, appender
from tracking.ingest.spool import spool_append

logger = logging.getLogger(__name__)

# After Redis fails, handlers skip it for this long instead of paying a timeout on every request.
REDIS_RETRY_SECONDS = 1.0

T = TypeVar("T")
_redis_down_until = 0.0


class EventNotStored(Exception):
    """Neither the stream, the database nor the spool took the event: it must not be acknowledged."""


class _Once:
    """A callable run at most once, whose result is kept."""

    def __init__(self, function: Callable[[], object] | None) -> None:
        self.function = function
        self.result = None

    def __call__(self) -> object:
        if self.function is not None:
            self.result, self.function = self.function(), None
        return self.result


def _stream_append(event: Event, meanwhile: _Once) -> bool:
    global _redis_down_until
    url = settings.BEACON_EVENT_REDIS_URL
    if not url or time.monotonic() < _redis_down_until:
        return False
    try:
        appender(url, settings.BEACON_EVENT_STREAM).append(event.to_wire(), meanwhile)
    except (StreamUnavailable, redis.RedisError):
        logger.warning("Redis unavailable; writing tracking events directly", exc_info=True)
        _redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
        return False
    return True


def _journal_ship(url: str, stream: str, lines: list[bytes]) -> None:
    """Ships journaled events: onto the stream, else (Redis down) into the database, in one batch
    either way; raises if neither took them, and the journal keeps them for replay."""
    global _redis_down_until
    if time.monotonic() >= _redis_down_until:
        try:
            appender(url, stream).append_many([line.rstrip(b"\n") for line in lines])
            return
        except (StreamUnavailable, redis.RedisError):
            logger.warning("Redis unavailable; writing journaled tracking events directly", exc_info=True)
            _redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
    try:
        store.events_store([Event.from_wire(line) for line in lines])
    except DatabaseError:
        if not connection.in_atomic_block:
            # The shipper thread has no request cycle to drop a broken connection: the next batch
            # would fail on it too, however soon the database is back.
            connection.close_if_unusable_or_obsolete()
        raise


_journals: dict[tuple[Path, str, str], EventJournal] = {}
_journal_down_until = 0.0


def _journal_append(event: Event) -> bool:
    """Writes the event to this process's journal, if Redis takes events."""
    global _journal_down_until
    url = settings.BEACON_EVENT_REDIS_URL
    if not url or not settings.BEACON_EVENT_JOURNAL or time.monotonic() < _journal_down_until:
        return False
    key = (settings.BEACON_SPOOL_DIR, url, settings.BEACON_EVENT_STREAM)
    journal = _journals.get(key)
    if journal is None:
        journal = _journals[key] = EventJournal(
            settings.BEACON_SPOOL_DIR,
            functools.partial(_journal_ship, url, settings.BEACON_EVENT_STREAM),
            interval=settings.BEACON_EVENT_JOURNAL_SHIP_MS / 1000,
            shipper_done=connections.close_all,  # the shipper thread's own connection, if Redis was down
        )
    try:
        journal.append(event.to_wire() + b"\n")
    except OSError:
        logger.warning("Event journal unavailable; handing tracking events to Redis directly", exc_info=True)
        _journal_down_until = time.monotonic() + REDIS_RETRY_SECONDS
        return False
    return True


def journals_flush() -> None:
    """Ships what this process's journals hold now (tests; the shipper thread does it on its own)."""
    for journal in list(_journals.values()):
        journal.flush()


def reset_process_state() -> None:
    """Forgets every per-process cache and back-off of ingestion, and the journals (tests roll rows
    back between runs)."""
    global _redis_down_until, _journal_down_until
    lookups.clear_caches()
    store.clear_caches()
    _redis_down_until = _journal_down_until = 0.0
    _journals.clear()


def event_submit(event: Event, meanwhile: Callable[[], T] | None = None) -> T | None:
    """Hands the event on durably (see the module's docstring) or raises EventNotStored.

    `meanwhile` (the handler's answer, say) is run once, while Redis takes the event, and its result
    returned once the event is stored: the handler's work overlaps the round trip.
    """
    answer = _Once(meanwhile)
    if _journal_append(event) or _stream_append(event, answer):
        return answer()
    try:
        store.events_store([event])
        return answer()
    except DatabaseError:
        logger.warning("Database unavailable; spooling tracking event", exc_info=True)
    try:
        spool_append([event])
    except OSError as exc:
        logger.error("Tracking event lost: stream, database and spool all failed", exc_info=True)
        raise EventNotStored from exc
    return answer()
