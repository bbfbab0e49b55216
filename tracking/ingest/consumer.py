"""The stream consumer: moves events from the Redis stream into the database, in batches.

It reads in a consumer group (``BEACON_EVENT_GROUP``), stores a batch with ``store.events_store``,
commits, then XACKs and XDELs it: an entry is acknowledged only once its event is stored, and a
consumer killed in between leaves it pending, to be stored again harmlessly (the event id). Run by the
Celery task ``tracking.consume_events`` and by ``manage.py tracking_consume``.
"""
import logging
import time

import redis
from django.conf import settings

from tracking.ingest import store
from tracking.ingest.event import Event
from tracking.ingest.redis_stream import STREAM_FIELD, redis_client

logger = logging.getLogger(__name__)


def _ensure_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(settings.BEACON_EVENT_STREAM, settings.BEACON_EVENT_GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _decode(entries: list) -> list[Event]:
    events = []
    for entry_id, fields in entries:
        try:
            events.append(Event.from_wire(fields[STREAM_FIELD]))
        except (KeyError, TypeError, ValueError):
            logger.error("Dropping malformed stream entry %s: %r", entry_id, fields)
    return events


def _acknowledge(client: redis.Redis, entry_ids: list) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.xack(settings.BEACON_EVENT_STREAM, settings.BEACON_EVENT_GROUP, *entry_ids)
    pipe.xdel(settings.BEACON_EVENT_STREAM, *entry_ids)
    pipe.execute()


def stream_consume_batch(
    *, consumer: str, batch_size: int = 1000, block_ms: int | None = None, reclaim_idle_ms: int | None = None
) -> int:
    """Stores one batch from the stream; returns its size.

    Entries come in this order: the consumer's own unacknowledged ones (a batch that failed here, the
    database being down, is retried at once rather than after the reclaim idle time), a dead
    consumer's (XAUTOCLAIM, once idle ``BEACON_STREAM_RECLAIM_IDLE_MS``), then new ones.
    """
    url = settings.BEACON_EVENT_REDIS_URL
    if not url:
        return 0
    client = redis_client(url)
    _ensure_group(client)
    stream, group = settings.BEACON_EVENT_STREAM, settings.BEACON_EVENT_GROUP
    idle = settings.BEACON_STREAM_RECLAIM_IDLE_MS if reclaim_idle_ms is None else reclaim_idle_ms
    own_pending = client.xreadgroup(group, consumer, {stream: "0"}, count=batch_size)
    entries = own_pending[0][1] if own_pending else []
    if not entries:
        entries = client.xautoclaim(stream, group, consumer, min_idle_time=idle, start_id="0-0", count=batch_size)[1]
    if not entries:
        answer = client.xreadgroup(group, consumer, {stream: ">"}, count=batch_size, block=block_ms)
        entries = answer[0][1] if answer else []
    if not entries:
        return 0
    store.events_store(_decode(entries))
    _acknowledge(client, [entry_id for entry_id, _ in entries])
    return len(entries)


def stream_consume(*, consumer: str, max_seconds: float, batch_size: int = 1000, block_ms: int = 1000) -> int:
    """Consumes batches until the stream is drained or `max_seconds` pass; returns the events stored."""
    deadline = time.monotonic() + max_seconds
    total = 0
    while time.monotonic() < deadline:
        stored = stream_consume_batch(consumer=consumer, batch_size=batch_size, block_ms=block_ms)
        total += stored
        if not stored:
            break
    return total
