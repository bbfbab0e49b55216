"""Event ingestion: from a handler's plain dict to a row in tracking_trackingevent, never lost.

An event is a small dict of plain values (see ``event_payload``), built by the handler. ``event_submit``
hands it on, in this order of preference:

1. with ``BEACON_EVENT_REDIS_URL`` (by default ``REDIS_URL``) and ``BEACON_EVENT_JOURNAL`` (the default),
   one line written to the process's journal (``tracking.journal``) in ``BEACON_SPOOL_DIR``; a thread
   ships the lines every ``BEACON_EVENT_JOURNAL_SHIP_MS`` onto the stream in one pipelined round trip,
   else (Redis down) into the database in one insert, else keeps them for ``spool_replay``, which also
   takes the journals of processes that died before shipping;
2. with Redis but no journal (or a journal that cannot be written), XADD to the stream
   ``BEACON_EVENT_STREAM``. Either way a consumer (``stream_consume``, run by the Celery task
   ``tracking.consume_events`` or ``manage.py tracking_consume``) reads batches in a consumer group,
   inserts them in one statement, commits, then XACKs (and XDELs) them; a batch whose insert failed is
   retried by its consumer first thing, and entries a dead consumer left pending are reclaimed with
   XAUTOCLAIM after ``BEACON_STREAM_RECLAIM_IDLE_MS``;
3. without Redis, or when Redis cannot be reached, a direct insert into the database;
4. when the database cannot be reached either, one JSON line appended and fsync'd to a spool file in
   ``BEACON_SPOOL_DIR``, replayed later by ``spool_replay`` (task ``tracking.replay_spool``).

Only if all fail does ``event_submit`` raise ``EventNotStored``, and the handler answers 503 instead
of acknowledging. Every insert is ``ON CONFLICT (event_id) DO NOTHING``, so a batch delivered twice (a
consumer killed between commit and XACK, a journal or spool replayed twice) is stored once.

For the stream to keep what it acknowledged across a Redis restart, Redis must persist it
(``appendonly yes``). On a power cut, ``appendfsync everysec`` loses up to about a second, and the
journal what it had not shipped (one interval); for no loss at all, ``appendfsync always`` and no journal.
"""
import fcntl
import functools
import hashlib
import io
import json
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TypeVar

import redis
from kombu.exceptions import OperationalError as KombuOperationalError
from django.conf import settings
from django.db import DatabaseError, connection, connections, transaction

from tracking import lookups, machine
from tracking.journal import REPLAY_SUFFIX, EventJournal, take_orphaned_segments
from tracking.lookups import TTLCache
from tracking.models import EventType, TrackingEvent, UserAgent
from tracking.randomness import random_bytes
from tracking.stream import StreamAppender, StreamUnavailable

logger = logging.getLogger(__name__)

MAX_USER_AGENT_LENGTH = 1000
MAX_PAGE_URL_LENGTH = 2000
# After Redis fails, handlers skip it for this long instead of paying a timeout on every request.
REDIS_RETRY_SECONDS = 1.0
STREAM_FIELD = b"e"
SPOOL_SUFFIX = ".jsonl"
STORE_BATCH_SIZE = 2000


class EventNotStored(Exception):
    """Neither the stream, the database nor the spool took the event: it must not be acknowledged."""


def new_event_id(now: float) -> str:
    """A UUIDv7-style id (millisecond time first, then random bits): time-ordered ids keep inserts
    into the unique index on event_id near its right edge instead of all over the tree."""
    value = (int(now * 1000) << 80) | int.from_bytes(random_bytes(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return f"{value:032x}"


def event_payload(
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
) -> dict:
    """The plain dict that travels through the stream and the spool; `ip` must be anonymized already."""
    now = time.time()
    return {
        "id": new_event_id(now),
        "ty": type,
        "at": now,
        "d": delivery_id,
        "m": message_id,
        "p": profile_id,
        "u": tracked_url_id,
        "ua": user_agent[:MAX_USER_AGENT_LENGTH],
        "ip": ip,
        "b": browser_id,
        "pg": page_url[:MAX_PAGE_URL_LENGTH],
        "am": amount,
        "mr": machine_reason,
    }


# --- Redis ---

T = TypeVar("T")
# Made once: json.dumps builds a new encoder on every call given separators.
_encode_event = json.JSONEncoder(separators=(",", ":")).encode
_clients: dict[str, redis.Redis] = {}
_redis_down_until = 0.0


def _redis_at(url: str) -> redis.Redis:
    client = _clients.get(url)
    if client is None:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=0.5)
        _clients[url] = client
    return client


def redis_client() -> redis.Redis | None:
    url = settings.BEACON_EVENT_REDIS_URL
    return _redis_at(url) if url else None


class RedisPyAppender:
    """XADD through redis-py, for the URLs StreamAppender does not speak (rediss://, TLS)."""

    def __init__(self, client: redis.Redis, stream: str) -> None:
        self.client = client
        self.stream = stream

    def append(self, payload: bytes, meanwhile: Callable[[], object] | None = None) -> None:
        self.client.xadd(self.stream, {STREAM_FIELD: payload})
        if meanwhile is not None:
            meanwhile()

    def append_many(self, payloads: list[bytes]) -> None:
        pipeline = self.client.pipeline(transaction=False)
        for payload in payloads:
            pipeline.xadd(self.stream, {STREAM_FIELD: payload})
        pipeline.execute()


_appenders: dict[tuple[str, str], StreamAppender | RedisPyAppender] = {}


def _appender(url: str, stream: str) -> StreamAppender | RedisPyAppender:
    key = (url, stream)
    appender = _appenders.get(key)
    if appender is None:
        if url.startswith(("redis://", "unix://")):
            appender = StreamAppender(url, stream)
        else:
            appender = RedisPyAppender(_redis_at(url), stream)
        _appenders[key] = appender
    return appender


class _Once:
    """A callable run at most once, whose result is kept."""

    def __init__(self, function: Callable[[], object] | None) -> None:
        self.function = function
        self.result = None

    def __call__(self) -> object:
        if self.function is not None:
            self.result, self.function = self.function(), None
        return self.result


def _stream_append(event: dict, meanwhile: _Once) -> bool:
    global _redis_down_until
    url = settings.BEACON_EVENT_REDIS_URL
    if not url or time.monotonic() < _redis_down_until:
        return False
    try:
        _appender(url, settings.BEACON_EVENT_STREAM).append(_encode_event(event).encode(), meanwhile)
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
            _appender(url, stream).append_many([line.rstrip(b"\n") for line in lines])
            return
        except (StreamUnavailable, redis.RedisError):
            logger.warning("Redis unavailable; writing journaled tracking events directly", exc_info=True)
            _redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
    try:
        events_store([json.loads(line) for line in lines])
    except DatabaseError:
        if not connection.in_atomic_block:
            # The shipper thread has no request cycle to drop a broken connection: the next batch
            # would fail on it too, however soon the database is back.
            connection.close_if_unusable_or_obsolete()
        raise


_journals: dict[tuple[Path, str, str], EventJournal] = {}
_journal_down_until = 0.0


def _journal_append(event: dict) -> bool:
    """Writes the event to this process's journal (see tracking.journal), if Redis takes events."""
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
        journal.append(_encode_event(event).encode() + b"\n")
    except OSError:
        logger.warning("Event journal unavailable; handing tracking events to Redis directly", exc_info=True)
        _journal_down_until = time.monotonic() + REDIS_RETRY_SECONDS
        return False
    return True


def journals_flush() -> None:
    """Ships what this process's journals hold now (tests; the shipper thread does it on its own)."""
    for journal in list(_journals.values()):
        journal.flush()


def event_submit(event: dict, meanwhile: Callable[[], T] | None = None) -> T | None:
    """Hands the event on durably (stream, else database, else spool) or raises EventNotStored.

    `meanwhile` (the handler's answer, say) is run once, while Redis takes the event, and its result
    returned once the event is stored: the handler's work overlaps the round trip.
    """
    answer = _Once(meanwhile)
    if _journal_append(event) or _stream_append(event, answer):
        return answer()
    try:
        events_store([event])
        return answer()
    except DatabaseError:
        logger.warning("Database unavailable; spooling tracking event", exc_info=True)
    try:
        spool_append([event])
    except OSError as exc:
        logger.error("Tracking event lost: stream, database and spool all failed", exc_info=True)
        raise EventNotStored from exc
    return answer()


# --- Database ---

_user_agent_ids = TTLCache(maxsize=20_000, ttl=3600.0)


def reset_process_state() -> None:
    """Forgets every per-process cache and back-off, and the journals (tests roll rows back between runs)."""
    global _redis_down_until, _journal_down_until
    lookups.clear_caches()
    _user_agent_ids.clear()
    _redis_down_until = _journal_down_until = 0.0
    _journals.clear()


def _digest(raw: str) -> str:
    return hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _resolve_user_agents(raws: set[str]) -> tuple[dict[str, int], list[int]]:
    """Ids of the UserAgent rows for these strings, creating missing rows; also the unparsed ids."""
    ids: dict[str, int] = {}
    missing: dict[str, str] = {}
    for raw in raws:
        digest = _digest(raw)
        cached = _user_agent_ids.get(digest)
        if isinstance(cached, int):
            ids[raw] = cached
        else:
            missing[digest] = raw
    if not missing:
        return ids, []
    UserAgent.objects.bulk_create(
        [UserAgent(digest=digest, raw=raw) for digest, raw in missing.items()], ignore_conflicts=True
    )
    unparsed = []
    for digest, pk, parsed_at in UserAgent.objects.filter(digest__in=list(missing)).values_list(
        "digest", "id", "parsed_at"
    ):
        _user_agent_ids.set(digest, pk)
        ids[missing[digest]] = pk
        if parsed_at is None:
            unparsed.append(pk)
    return ids, unparsed


def _amount(value) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and abs(amount) < Decimal("1e10") else None


def _rows(events: list[dict], user_agent_ids: dict[str, int]) -> list[tuple]:
    rows = []
    for event in events:
        reason = event.get("mr") or ""
        rows.append(
            (
                str(uuid.UUID(event["id"])),
                event["ty"],
                datetime.fromtimestamp(float(event["at"]), tz=UTC),
                event.get("d"),
                event.get("m"),
                event.get("p"),
                event.get("u"),
                user_agent_ids.get(event.get("ua") or ""),
                event.get("ip") or None,
                (event.get("b") or "")[:32],
                event.get("pg") or "",
                _amount(event.get("am")),
                bool(reason),
                reason,
            )
        )
    return rows


LOAD_TABLE = "tracking_event_load"
COPY_THRESHOLD = 50
EVENT_COLUMNS = (
    "event_id",
    "type",
    "logged_at",
    "delivery_id",
    "message_id",
    "profile_id",
    "tracked_url_id",
    "user_agent_id",
    "ip",
    "browser_id",
    "page_url",
    "amount",
    "is_machine",
    "machine_reason",
)


def _copy_escape(text: str) -> str:
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def _copy_line(row: tuple) -> str:
    """A row in PostgreSQL's COPY text format (`\\N` is NULL); one f-string, it runs per event."""
    (event_id, type_, logged_at, delivery, message, profile, url, agent, ip, browser, page, amount, machine, reason) = row
    null = "\\N"
    return (
        f"{event_id}\t{type_}\t{logged_at.isoformat()}\t{null if delivery is None else delivery}\t"
        f"{null if message is None else message}\t{null if profile is None else profile}\t"
        f"{null if url is None else url}\t{null if agent is None else agent}\t{null if ip is None else ip}\t"
        f"{_copy_escape(browser)}\t{_copy_escape(page) if page else ''}\t{null if amount is None else amount}\t"
        f"{'t' if machine else 'f'}\t{_copy_escape(reason)}\n"
    )


def _insert_rows(rows: list[tuple]) -> None:
    """One bulk insert that skips event ids already stored.

    On PostgreSQL, a few rows (a request's direct write) go in one INSERT ... VALUES; a consumer's
    batch is COPied into a session-local temporary table (no index, no WAL, emptied at commit) and
    moved with one INSERT ... SELECT. Either way: ON CONFLICT (event_id) DO NOTHING.
    """
    if connection.vendor != "postgresql":
        TrackingEvent.objects.bulk_create(
            [TrackingEvent(**dict(zip(EVENT_COLUMNS, row))) for row in rows], ignore_conflicts=True
        )
        return
    table, columns = TrackingEvent._meta.db_table, ", ".join(EVENT_COLUMNS)
    with connection.cursor() as cursor:
        if len(rows) < COPY_THRESHOLD:
            template = "(%s::uuid, %s, %s, %s, %s, %s, %s, %s, %s::inet, %s, %s, %s, %s, %s)"
            values = b",".join(cursor.cursor.mogrify(template, row) for row in rows).decode()
            cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {values} ON CONFLICT (event_id) DO NOTHING")
            return
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {LOAD_TABLE} ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM {table} WITH NO DATA"
        )
        data = io.StringIO("".join(map(_copy_line, rows)))
        cursor.cursor.copy_expert(f"COPY {LOAD_TABLE} ({columns}) FROM STDIN", data)
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {LOAD_TABLE} ON CONFLICT (event_id) DO NOTHING"
        )


BURST_WINDOW = timedelta(seconds=1)
HONEYPOT_CLIENT_WINDOW = timedelta(seconds=5)


def _burst_ids(message_clicks: list) -> list:
    """The unflagged clicks of a time window of one second in which every link of the message was hit."""
    if len({click.tracked_url_id for click in message_clicks}) < 2:
        return []
    links = lookups.delivery_link_ids(message_clicks[0].delivery_id)
    if len(links) < 2:
        return []
    found = []
    start = 0
    for end in range(len(message_clicks)):
        while message_clicks[end].logged_at - message_clicks[start].logged_at > BURST_WINDOW:
            start += 1
        in_window = message_clicks[start : end + 1]
        if links <= {click.tracked_url_id for click in in_window}:
            found.extend(click.event_id for click in in_window if not click.is_machine)
    return found


def _honeypot_client_ids(message_clicks: list) -> list:
    """The unflagged clicks made by a client (anonymized IP and user agent) that clicked the message's
    honeypot link within HONEYPOT_CLIENT_WINDOW of them."""
    honeypot_times = defaultdict(list)
    for click in message_clicks:
        if click.machine_reason == machine.REASON_HONEYPOT and click.ip is not None:
            honeypot_times[(click.ip, click.user_agent_id)].append(click.logged_at)
    if not honeypot_times:
        return []
    return [
        click.event_id
        for click in message_clicks
        if not click.is_machine
        and any(
            abs(click.logged_at - at) <= HONEYPOT_CLIENT_WINDOW
            for at in honeypot_times.get((click.ip, click.user_agent_id), ())
        )
    ]


def _flag_click_patterns(rows: list[tuple]) -> None:
    """Marks as machine, with the message's clicks already stored, the clicks of a burst (every link of
    the message within one second) and the other clicks of a client that clicked the honeypot link."""
    clicks = [row for row in rows if row[1] == EventType.CLICK and row[4] is not None and row[6] is not None]
    if not clicks:
        return
    times = [row[2] for row in clicks]
    window = max(BURST_WINDOW, HONEYPOT_CLIENT_WINDOW)
    earliest, latest = min(times) - window, max(times) + window
    # The time window is applied here, not in SQL: with it in the query, the planner may pick the
    # logged_at index and read every recent event (it did on a freshly filled table, stats not yet
    # analyzed); without it, only the (message, type) index fits, and it reads the same rows anyway.
    candidates = (
        TrackingEvent.objects.filter(message_id__in={row[4] for row in clicks}, type=EventType.CLICK)
        .values_list(
            "message_id", "delivery_id", "tracked_url_id", "logged_at", "event_id", "is_machine", "machine_reason",
            "ip", "user_agent_id", named=True,
        )
        .order_by("message_id", "logged_at")
    )
    by_message: dict[int, list] = defaultdict(list)
    for candidate in candidates:
        if earliest <= candidate.logged_at <= latest:
            by_message[candidate.message_id].append(candidate)
    burst_ids: set = set()
    honeypot_client_ids: set = set()
    for message_clicks in by_message.values():
        burst_ids.update(_burst_ids(message_clicks))
        honeypot_client_ids.update(_honeypot_client_ids(message_clicks))
    for ids, reason in (
        (burst_ids, machine.REASON_BURST),
        (honeypot_client_ids - burst_ids, machine.REASON_HONEYPOT_CLIENT),
    ):
        if ids:
            TrackingEvent.objects.filter(event_id__in=ids, is_machine=False).update(is_machine=True, machine_reason=reason)


def _queue_user_agent_parsing(ids: list[int]) -> None:
    from tracking.tasks import parse_user_agents

    try:
        parse_user_agents.delay(ids)
    except (KombuOperationalError, redis.RedisError, OSError, DatabaseError):
        # The events are stored; the periodic task parses what is left unparsed.
        logger.warning("Could not queue user-agent parsing", exc_info=True)


def events_store(events: list[dict]) -> None:
    """Inserts the events (one statement per batch), skipping event ids already stored.

    The insert and the click-pattern checks of a batch commit together, so no reader sees them unflagged;
    the user-agent rows commit on their own (idempotent, like everything here). User agents seen for
    the first time are queued for parsing once committed (with the embedded default's in-process
    tasks, that parse runs right there, once per distinct user agent and process).
    """
    unparsed: list[int] = []
    for start in range(0, len(events), STORE_BATCH_SIZE):
        batch = events[start : start + STORE_BATCH_SIZE]
        user_agent_ids, new_unparsed = _resolve_user_agents({event["ua"] for event in batch if event.get("ua")})
        rows = _rows(batch, user_agent_ids)
        with transaction.atomic(savepoint=False):
            _insert_rows(rows)
            _flag_click_patterns(rows)
        unparsed.extend(new_unparsed)
    if unparsed:
        transaction.on_commit(lambda: _queue_user_agent_parsing(unparsed))


# --- Stream consumer ---


def _ensure_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(settings.BEACON_EVENT_STREAM, settings.BEACON_EVENT_GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _decode(entries: list) -> list[dict]:
    events = []
    for entry_id, fields in entries:
        try:
            events.append(json.loads(fields[STREAM_FIELD]))
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
    consumer's (XAUTOCLAIM), then new ones.
    """
    client = redis_client()
    if client is None:
        return 0
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
    events_store(_decode(entries))
    _acknowledge(client, [entry_id for entry_id, _ in entries])
    return len(entries)


def stream_consume(
    *, consumer: str, max_seconds: float, batch_size: int = 1000, block_ms: int = 1000
) -> int:
    """Consumes batches until the stream is drained or `max_seconds` pass; returns the events stored."""
    deadline = time.monotonic() + max_seconds
    total = 0
    while time.monotonic() < deadline:
        stored = stream_consume_batch(consumer=consumer, batch_size=batch_size, block_ms=block_ms)
        total += stored
        if not stored:
            break
    return total


# --- Spool ---


def _spool_dir() -> Path:
    path = Path(settings.BEACON_SPOOL_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def spool_append(events: list[dict]) -> None:
    """Appends the events as JSON lines and fsyncs: once this returns, they survive a crash."""
    path = _spool_dir() / f"events-{os.getpid()}{SPOOL_SUFFIX}"
    data = "".join(json.dumps(event, separators=(",", ":")) + "\n" for event in events).encode()
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # The replayer may have renamed the file between our open and our lock: write to a fresh one.
            if os.fstat(fd).st_nlink == 0 or os.fstat(fd).st_ino != os.stat(path).st_ino:
                continue
            os.write(fd, data)
            os.fsync(fd)
            return
        except FileNotFoundError:
            continue
        finally:
            os.close(fd)


def spool_replay() -> int:
    """Stores every spooled event (idempotent by event id); returns how many lines were replayed."""
    directory = _spool_dir()
    take_orphaned_segments(directory)
    for path in directory.glob(f"*{SPOOL_SUFFIX}"):
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            target = path.with_name(f"{path.stem}-{uuid.uuid4().hex}{REPLAY_SUFFIX}")
            os.rename(path, target)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    replayed = 0
    for path in sorted(directory.glob(f"*{REPLAY_SUFFIX}")):
        events = []
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                logger.error("Skipping a torn line in %s", path)
        events_store(events)
        path.unlink()
        replayed += len(events)
    return replayed
