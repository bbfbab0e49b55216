"""Storing events: the only writer of TrackingEvent rows (it inserts them; `events_delete`,
`events_move` and `events_anonymize` are retention's purge, the demo data's time move and a person's
erasure, which other apps call).

``events_store`` is what every stage ends in (a handler's direct write, the journal's shipper, the
stream consumer, the spool's replay). Per batch of up to STORE_BATCH_SIZE events it resolves the user
agents to rows of the distinct-UA table, inserts the events in one statement that skips event ids
already stored (``ON CONFLICT (event_id) DO NOTHING``: a batch delivered twice is stored once), and
runs the click-pattern checks of ``tracking.machine`` in the same transaction. User agents seen for the
first time are announced with the signal ``user_agents_seen`` once committed, and each batch with
``events_stored``.

An event still in transit (journal, stream, spool) when its person is erased is stored anonymously: the
batch's messages whose profile is gone are found in one query per batch, under a lock that an erase
takes exclusively (``erasures_lock``, so that no batch slips in between), and their events lose the IP,
the user agent, the profile, the browser id and any address their page URL carried.
"""
import hashlib
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import F
from django.dispatch import Signal

from deliveries.models import Message
from tracking import machine
from tracking.ingest.event import Event
from tracking.lookups import TTLCache
from tracking.models import EventType, TrackingEvent, UserAgent

STORE_BATCH_SIZE = 2000
# Fewer rows than this (a request's direct write) go in one INSERT ... VALUES; more are COPied.
COPY_THRESHOLD = 50
LOAD_TABLE = "tracking_event_load"

# Sent once the batch that created them is committed, with `ids`: the new UserAgent rows, unparsed.
# The tracking app queues their parsing (tracking.apps); the store never imports the task module.
user_agents_seen = Signal()
# Sent once per batch when it is committed, with `event_ids` (its events, new or stored before: a
# receiver must be idempotent) and `event_types` (the set of their types, so that a receiver can tell
# without a query that it wants none of them). The webhooks app turns them into its outbox (webhooks.apps).
events_stored = Signal()

_user_agent_ids = TTLCache(maxsize=20_000, ttl=3600.0)


class Row(NamedTuple):
    """One row of TrackingEvent, its fields named as the model's attributes, in the column order of
    every statement below."""

    event_id: str
    type: str
    logged_at: datetime
    delivery_id: int | None
    message_id: int | None
    profile_id: int | None
    tracked_url_id: int | None
    user_agent_id: int | None
    ip: str | None
    browser_id: str
    page_url: str
    amount: Decimal | None
    is_machine: bool
    machine_reason: str


# The advisory lock of `erasures_lock` (a constant of Beacon's own: "beacon-e").
ERASURES_LOCK_KEY = int.from_bytes(b"beacon-e", "big") >> 1
# Anything address-shaped in an erased person's page URL: their address is no longer known to cut it.
_ADDRESS_RE = re.compile(r"[^\s/?&=#@]+(?:@|%40)[^\s/?&=#]+", re.IGNORECASE)

_TABLE = TrackingEvent._meta.db_table
_COLUMNS = ", ".join(TrackingEvent._meta.get_field(name).column for name in Row._fields)
# Text parameters that these columns take only through an explicit cast in a multi-row VALUES.
_CASTS = {"event_id": "::uuid", "ip": "::inet"}
_VALUES_TEMPLATE = "(" + ", ".join(f"%s{_CASTS.get(name, '')}" for name in Row._fields) + ")"


def clear_caches() -> None:
    """Forgets the user-agent ids this process knows (tests roll rows back, so ids get reused)."""
    _user_agent_ids.clear()


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


def _amount(value: str | None) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and abs(amount) < Decimal("1e10") else None


def _row(event: Event, user_agent_ids: dict[str, int]) -> Row:
    # Positional, in Row's order: keyword arguments make a consumer's batch measurably slower.
    return Row(
        str(uuid.UUID(event.event_id)),
        event.type,
        datetime.fromtimestamp(event.logged_at, tz=UTC),
        event.delivery_id,
        event.message_id,
        event.profile_id,
        event.tracked_url_id,
        user_agent_ids.get(event.user_agent),
        event.ip,
        event.browser_id[:32],
        event.page_url,
        _amount(event.amount),
        bool(event.machine_reason),
        event.machine_reason,
    )


def _erasures_lock_sql(*, exclusive: bool) -> str:
    return f"SELECT pg_advisory_xact_lock{'' if exclusive else '_shared'}(%s)"


def erasures_lock(*, exclusive: bool) -> None:
    """Orders an erase and the batches being stored, until the end of the transaction: a batch that looked
    for erased messages before an erase committed is committed before the erase anonymizes events, and
    one that looks after waits for the erase and sees it. Shared by the batches; exclusive for an erase,
    which takes it first, before any row lock, so that neither waits for the other holding one. On
    SQLite, whose transactions take the write lock as they begin (IMMEDIATE), they are already ordered."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_erasures_lock_sql(exclusive=exclusive), [ERASURES_LOCK_KEY])


def _erased_message_ids(events: list[Event]) -> set[int]:
    """The batch's messages whose person is erased: every message has a profile from its analysis until
    the erase unlinks it (`deliveries.services.privacy`), so a message without one is an erased person's.
    Read under the shared `erasures_lock`, taken in the same round trip on PostgreSQL (a statement of its
    own, so that the read's snapshot comes after it): one round trip per batch."""
    message_ids = {event.message_id for event in events if event.message_id is not None}
    if not message_ids:
        return set()
    erased = Message.objects.filter(id__in=message_ids, profile__isnull=True).values_list("id", flat=True)
    if connection.vendor != "postgresql":
        return set(erased)
    sql, params = erased.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"{_erasures_lock_sql(exclusive=False)}; {sql}", [ERASURES_LOCK_KEY, *params])
        return {message_id for (message_id,) in cursor.fetchall()}


def _anonymous(row: Row) -> Row:
    """An erased person's event as `events_anonymize` would leave it, and without what could tie it to
    them (user agent, browser id): nothing has counted it yet, so no report changes."""
    return row._replace(
        profile_id=None, user_agent_id=None, ip=None, browser_id="", page_url=_ADDRESS_RE.sub("", row.page_url)
    )


def _copy_escape(text: str) -> str:
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def _copy_line(row: Row) -> str:
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


def _insert_rows(rows: list[Row]) -> None:
    """One bulk insert that skips event ids already stored.

    On PostgreSQL, a few rows (a request's direct write) go in one INSERT ... VALUES; a consumer's
    batch is COPied into a session-local temporary table (no index, no WAL, emptied at commit) and
    moved with one INSERT ... SELECT. Either way: ON CONFLICT (event_id) DO NOTHING.
    """
    if connection.vendor != "postgresql":
        TrackingEvent.objects.bulk_create([TrackingEvent(**row._asdict()) for row in rows], ignore_conflicts=True)
        return
    with connection.cursor() as cursor:
        if len(rows) < COPY_THRESHOLD:
            values = b",".join(cursor.cursor.mogrify(_VALUES_TEMPLATE, row) for row in rows).decode()
            cursor.execute(f"INSERT INTO {_TABLE} ({_COLUMNS}) VALUES {values} ON CONFLICT (event_id) DO NOTHING")
            return
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {LOAD_TABLE} ON COMMIT DELETE ROWS AS "
            f"SELECT {_COLUMNS} FROM {_TABLE} WITH NO DATA"
        )
        data = io.StringIO("".join(map(_copy_line, rows)))
        cursor.cursor.copy_expert(f"COPY {LOAD_TABLE} ({_COLUMNS}) FROM STDIN", data)
        cursor.execute(
            f"INSERT INTO {_TABLE} ({_COLUMNS}) SELECT {_COLUMNS} FROM {LOAD_TABLE} ON CONFLICT (event_id) DO NOTHING"
        )


def _flag_click_patterns(rows: list[Row]) -> None:
    clicks = [
        row for row in rows
        if row.type == EventType.CLICK and row.message_id is not None and row.tracked_url_id is not None
    ]
    if clicks:
        times = [row.logged_at for row in clicks]
        machine.flag_click_patterns(message_ids={row.message_id for row in clicks}, first=min(times), last=max(times))


def _announce_on_commit(rows: list[Row]) -> None:
    event_ids = [row.event_id for row in rows]
    event_types = {row.type for row in rows}
    # Robust: the events are stored whatever a receiver does; it logs its own failure.
    transaction.on_commit(lambda: events_stored.send_robust(sender=TrackingEvent, event_ids=event_ids, event_types=event_types))


def events_store(events: list[Event]) -> None:
    """Inserts the events (one statement per batch), skipping event ids already stored.

    The insert and the click-pattern checks of a batch commit together, so no reader sees them unflagged;
    the user-agent rows commit on their own (idempotent, like everything here). User agents seen for
    the first time are announced (``user_agents_seen``) once committed; with the embedded default's
    in-process tasks, their parse runs right there, once per distinct user agent and process.
    """
    unparsed: list[int] = []
    for start in range(0, len(events), STORE_BATCH_SIZE):
        batch = events[start : start + STORE_BATCH_SIZE]
        user_agent_ids, new_unparsed = _resolve_user_agents({event.user_agent for event in batch if event.user_agent})
        rows = [_row(event, user_agent_ids) for event in batch]
        with transaction.atomic(savepoint=False):
            erased = _erased_message_ids(batch)
            if erased:
                rows = [_anonymous(row) if row.message_id in erased else row for row in rows]
            _insert_rows(rows)
            _flag_click_patterns(rows)
            if events_stored.has_listeners():
                _announce_on_commit(rows)
        unparsed.extend(new_unparsed)
    if unparsed:
        transaction.on_commit(lambda: user_agents_seen.send(sender=UserAgent, ids=unparsed))


def events_move(*, delivery_id: int, logged_from: datetime, logged_to: datetime, by: timedelta) -> int:
    """Moves the logged time of the delivery's events logged in [logged_from, logged_to] by `by` (demo data,
    whose activity is made now and moved to when it plays); returns how many moved."""
    return TrackingEvent.objects.filter(
        delivery_id=delivery_id, logged_at__range=(logged_from, logged_to)
    ).update(logged_at=F("logged_at") + by)


def events_delete(*, event_ids: list[int]) -> int:
    """Deletes raw events by id: retention's purge, which chose them (consolidated, older than the retention
    period). Returns how many were deleted."""
    deleted, _ = TrackingEvent.objects.filter(id__in=event_ids).delete()
    return deleted


def events_anonymize(*, profile_id: int, message_ids: list[int], addresses: set[str]) -> int:
    """An erased person's events, kept anonymously: unlinked from the profile, their IP cleared, and any of
    `addresses` a web page's URL carried cut out. Every column the consolidation counts by (type, times,
    delivery, message, link, user agent, browser id, machine flag) stays, so a recompute counts them alike.
    The events are the profile's and those of its messages (a person without tracking consent has events
    linked to their messages only). Returns how many events."""
    events = TrackingEvent.objects.filter(profile_id=profile_id)
    if message_ids:
        events = events | TrackingEvent.objects.filter(message_id__in=message_ids)
    if addresses:
        quoted = re.compile("|".join(re.escape(address) for address in sorted(addresses, key=len, reverse=True)), re.IGNORECASE)
        pages = [event for event in events.exclude(page_url="").only("id", "page_url") if quoted.search(event.page_url)]
        for event in pages:
            event.page_url = quoted.sub("", event.page_url)
        TrackingEvent.objects.bulk_update(pages, ["page_url"], batch_size=1000)
    return events.update(profile=None, ip=None)
