"""Consolidation of tracking events into rollups, full recompute, delivery-log statistics, retention.

Two ways fill the event rollups and they must agree number for number (a test checks it):

- `events_consolidate` (every minute) reads new events from a stored pointer in bounded batches and
  merges them into the rollups in Python: additive counters are upserted as increments, per-message,
  per-link and per-person rows keep first times, and a first time appearing or moving to an earlier
  bucket moves the distinct counters (see `reporting.models`).
- `delivery_recompute` deletes one delivery's rollups and rebuilds them with set-based SQL
  (`INSERT ... SELECT ... GROUP BY`), portable between PostgreSQL and SQLite.

Both hold the consolidation lock (a row lock on `ConsolidationState`), so they never interleave.
"""
import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.db import OperationalError, connection, models, transaction
from django.db.models import Count, F, Q, Value
from django.db.models.functions import Coalesce, Lower, StrIndex, Substr, TruncHour
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from beacon.exceptions import NotFound, TransitionNotAllowed
from deliveries.models import Delivery, DeliveryStatus, FailureType, Message, MessageStatus
from profiles.models import EmailStatus
from reporting.models import (
    ClickStreamRollup,
    ConsolidationGap,
    ConsolidationState,
    DeliveryReportState,
    DeliveryRollup,
    DomainMessageStats,
    DomainRollup,
    FailureStats,
    LinkKind,
    LinkRollup,
    MessageLinkRollup,
    MessageRollup,
    PersonRollup,
    ThroughputStats,
    TimeBucketRollup,
    UserAgentRollup,
)
from tracking.models import EventType, TrackedUrl, TrackingEvent, TrackingMode

STATE_NAME = "events"
BATCH_SIZE = 20_000
MAX_BATCHES_PER_RUN = 50
# Ingestion transactions last milliseconds; an id missing for this long was rolled back.
GAP_TIME_TO_LIVE = dt.timedelta(minutes=30)
PURGE_BATCH_SIZE = 10_000
PURGE_MAX_BATCHES = 100
HALF_HOUR_SECONDS = 1800
KEY_LENGTH = 300
DOMAIN_LENGTH = 255
# Clicks on these links are not clicks: they are counted as opt-outs and mirror-page views.
NOT_CLICK_MODES = (TrackingMode.OPT_OUT, TrackingMode.MIRROR)
CONSOLIDATED_TYPES = (EventType.OPEN, EventType.CLICK, EventType.OPT_OUT, EventType.MIRROR)
EVENT_FIELDS = (
    "id", "type", "logged_at", "delivery_id", "message_id", "tracked_url_id", "user_agent_id", "browser_id",
    "is_machine",
)
SENDING_STATUSES = (DeliveryStatus.SENDING, DeliveryStatus.PAUSED)

EVENT_ROLLUPS = (
    DeliveryRollup, DomainRollup, TimeBucketRollup, LinkRollup, ClickStreamRollup, UserAgentRollup,
    MessageRollup, MessageLinkRollup, PersonRollup,
)


def half_hour_start(at: dt.datetime) -> dt.datetime:
    seconds = int(at.timestamp()) // HALF_HOUR_SECONDS * HALF_HOUR_SECONDS
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def utc_day(at: dt.datetime) -> dt.date:
    return at.astimezone(dt.UTC).date()


def email_domain(email: str | None) -> str:
    """The recipient domain as rollups key it: after the first '@', lower-cased."""
    if not email or "@" not in email:
        return ""
    return email.partition("@")[2][:DOMAIN_LENGTH].lower()


def scopes_of(is_machine: bool) -> tuple[bool, ...]:
    """The `humans_only` rows an event counts in."""
    return (False,) if is_machine else (False, True)


# --- Locking -------------------------------------------------------------------------------------

@contextmanager
def _consolidation_lock(*, wait: bool) -> Iterator[ConsolidationState | None]:
    """A transaction holding the consolidation lock; yields None if busy and `wait` is false."""
    ConsolidationState.objects.get_or_create(name=STATE_NAME)
    with transaction.atomic():
        states = ConsolidationState.objects.filter(name=STATE_NAME)
        if connection.features.has_select_for_update_skip_locked:
            yield states.select_for_update(skip_locked=not wait).first()
        else:
            # SQLite has no row locks: writing first takes the database write lock, which serializes runs.
            states.update(pointer=F("pointer"))
            yield states.first()


# --- Additive upserts ----------------------------------------------------------------------------

def _adapt(model_field: models.Field, value):
    if isinstance(model_field, models.DateTimeField):
        return connection.ops.adapt_datetimefield_value(value)
    if isinstance(model_field, models.DateField):
        return connection.ops.adapt_datefield_value(value)
    return value


def _add_counts(model: type[models.Model], key_fields: tuple[str, ...], deltas: dict[tuple, Counter]) -> None:
    """Adds each Counter to the row of its key (creating it): `INSERT ... ON CONFLICT DO UPDATE`."""
    deltas = {key: counts for key, counts in deltas.items() if any(counts.values())}
    if not deltas:
        return
    count_fields = [
        f.name for f in model._meta.concrete_fields
        if isinstance(f, models.BigIntegerField) and not f.primary_key and f.name not in key_fields
    ]
    fields = [model._meta.get_field(name) for name in (*key_fields, *count_fields)]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(f.column) for f in fields)
    conflict = ", ".join(quote(model._meta.get_field(name).column) for name in key_fields)
    updates = ", ".join(
        f"{quote(f.column)} = {table}.{quote(f.column)} + excluded.{quote(f.column)}"
        for f in fields[len(key_fields):]
    )
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    items = list(deltas.items())
    with connection.cursor() as cursor:
        for start in range(0, len(items), 500):
            chunk = items[start:start + 500]
            params = []
            for key, counts in chunk:
                values = (*key, *(counts.get(name, 0) for name in count_fields))
                params.extend(_adapt(f, v) for f, v in zip(fields, values))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([row_sql] * len(chunk))} "
                f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}",
                params,
            )


@dataclass
class _Deltas:
    """Increments to the small rollup tables, keyed as their unique constraints."""

    delivery: dict = field(default_factory=lambda: defaultdict(Counter))
    domain: dict = field(default_factory=lambda: defaultdict(Counter))
    bucket: dict = field(default_factory=lambda: defaultdict(Counter))
    link: dict = field(default_factory=lambda: defaultdict(Counter))
    stream: dict = field(default_factory=lambda: defaultdict(Counter))
    user_agent: dict = field(default_factory=lambda: defaultdict(Counter))

    def write(self) -> None:
        _add_counts(DeliveryRollup, ("delivery_id", "humans_only"), self.delivery)
        _add_counts(DomainRollup, ("delivery_id", "humans_only", "domain"), self.domain)
        _add_counts(TimeBucketRollup, ("delivery_id", "humans_only", "bucket_start"), self.bucket)
        _add_counts(LinkRollup, ("delivery_id", "humans_only", "kind", "key", "day"), self.link)
        _add_counts(ClickStreamRollup, ("delivery_id", "humans_only", "from_url_id", "to_url_id"), self.stream)
        _add_counts(UserAgentRollup, ("delivery_id", "humans_only", "user_agent_id"), self.user_agent)


def _earliest(first: dt.datetime | None, second: dt.datetime | None) -> dt.datetime | None:
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)


def _smallest(first: str | None, second: str | None) -> str | None:
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)


def _chunks(values: Iterable, size: int = 2000) -> Iterator[list]:
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start:start + size]


# --- Incremental consolidation -------------------------------------------------------------------

def _link_keys(url_id: int, url: tuple | None) -> list[tuple[str, str]]:
    if url is None:
        return [(LinkKind.URL, str(url_id)), (LinkKind.LABEL, ""), (LinkKind.CATEGORY, "")]
    _mode, label, address, category = url
    return [
        (LinkKind.URL, str(url_id)),
        (LinkKind.LABEL, (label or address)[:KEY_LENGTH]),
        (LinkKind.CATEGORY, category[:KEY_LENGTH]),
    ]


def _click_sequence(rows: Iterable[tuple[str, dt.datetime | None]]) -> list[str]:
    """A recipient's tracked URLs (keys) in the order of their first clicks; ties by key."""
    return [key for key, at in sorted((row for row in rows if row[1] is not None), key=lambda r: (r[1], r[0]))]


def _pairs(sequence: list[str]) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in zip(sequence, sequence[1:])]


def _apply_events(rows: list[tuple]) -> int:
    """Merges events (tuples of EVENT_FIELDS) into the rollups; returns how many counted."""
    delivery_ids = {row[3] for row in rows if row[3] is not None}
    existing_deliveries = set(Delivery.objects.filter(id__in=delivery_ids).values_list("id", flat=True))
    rows = [row for row in rows if row[3] in existing_deliveries and row[1] in CONSOLIDATED_TYPES]
    if not rows:
        return 0
    domains: dict[int, str] = {}
    for chunk in _chunks({row[4] for row in rows if row[4] is not None}):
        domains.update((pk, email_domain(email)) for pk, email in Message.objects.filter(id__in=chunk).values_list("id", "email"))
    urls: dict[int, tuple] = {}
    for chunk in _chunks({row[5] for row in rows if row[5] is not None}):
        urls.update(
            (pk, rest) for pk, *rest in TrackedUrl.objects.filter(id__in=chunk).values_list("id", "mode", "label", "url", "category")
        )

    deltas = _Deltas()
    message_updates: dict[int, dict] = {}
    link_updates: dict[tuple[int, str, str], dict] = {}
    person_updates: dict[tuple[int, str], dict] = {}
    for _pk, event_type, logged_at, delivery_id, message_id, url_id, user_agent_id, browser_id, is_machine in rows:
        domain = domains.get(message_id, "")
        scopes = scopes_of(is_machine)
        url = urls.get(url_id) if url_id is not None else None
        if event_type == EventType.OPT_OUT:
            for scope in scopes:
                deltas.delivery[(delivery_id, scope)]["opt_outs"] += 1
                deltas.domain[(delivery_id, scope, domain)]["opt_outs"] += 1
            continue
        if event_type == EventType.MIRROR:
            for scope in scopes:
                deltas.delivery[(delivery_id, scope)]["mirror_page_views"] += 1
                deltas.domain[(delivery_id, scope, domain)]["mirror_page_views"] += 1
            continue
        is_open = event_type == EventType.OPEN
        if not is_open and url is not None and url[0] in NOT_CLICK_MODES:
            continue
        counter = "opens" if is_open else "clicks"
        bucket = half_hour_start(logged_at)
        for scope in scopes:
            deltas.delivery[(delivery_id, scope)][counter] += 1
            deltas.domain[(delivery_id, scope, domain)][counter] += 1
            deltas.bucket[(delivery_id, scope, bucket)][counter] += 1
            if is_open:
                deltas.user_agent[(delivery_id, scope, user_agent_id or 0)]["opens"] += 1
        link_keys = _link_keys(url_id, url) if not is_open and url_id is not None else []
        if link_keys:
            day = utc_day(logged_at)
            for scope in scopes:
                for kind, key in link_keys:
                    deltas.link[(delivery_id, scope, kind, key, day)]["clicks"] += 1
        human_at = None if is_machine else logged_at
        if message_id is not None:
            update = message_updates.setdefault(
                message_id, {"delivery_id": delivery_id, "domain": domain, "counts": Counter(), "first": {}}
            )
            update["counts"][counter] += 1
            if not is_machine:
                update["counts"]["human_" + counter] += 1
            firsts = update["first"]
            firsts["first_open_at"] = _earliest(firsts.get("first_open_at"), logged_at)
            firsts["first_human_open_at"] = _earliest(firsts.get("first_human_open_at"), human_at)
            if not is_open:
                firsts["first_click_at"] = _earliest(firsts.get("first_click_at"), logged_at)
                firsts["first_human_click_at"] = _earliest(firsts.get("first_human_click_at"), human_at)
                for kind, key in link_keys:
                    link = link_updates.setdefault((message_id, kind, key), {"delivery_id": delivery_id})
                    link["first_click_at"] = _earliest(link.get("first_click_at"), logged_at)
                    link["first_human_click_at"] = _earliest(link.get("first_human_click_at"), human_at)
        if not is_open:
            person_key = browser_id or (f"m{message_id}" if message_id is not None else "")
            if person_key:
                person = person_updates.setdefault((delivery_id, person_key), {})
                person["domain"] = _smallest(person.get("domain"), domain)
                person["human_domain"] = _smallest(person.get("human_domain"), None if is_machine else domain)

    _merge_messages(message_updates, deltas)
    _merge_links(link_updates, deltas)
    _merge_persons(person_updates, deltas)
    deltas.write()
    return len(rows)


# (first-time column, humans_only, counter of the small tables)
MESSAGE_FIRSTS = (
    ("first_open_at", False, "distinct_opens"),
    ("first_human_open_at", True, "distinct_opens"),
    ("first_click_at", False, "distinct_clicks"),
    ("first_human_click_at", True, "distinct_clicks"),
)
MESSAGE_COUNTS = ("opens", "human_opens", "clicks", "human_clicks")


def _merge_messages(updates: dict[int, dict], deltas: _Deltas) -> None:
    existing: dict[int, MessageRollup] = {}
    for chunk in _chunks(updates):
        existing.update((row.message_id, row) for row in MessageRollup.objects.filter(message_id__in=chunk))
    merged = []
    for message_id, update in updates.items():
        row = existing.get(message_id) or MessageRollup(
            message_id=message_id, delivery_id=update["delivery_id"], domain=update["domain"]
        )
        for name in MESSAGE_COUNTS:
            setattr(row, name, getattr(row, name) + update["counts"][name])
        for column, scope, counter in MESSAGE_FIRSTS:
            old = getattr(row, column)
            new = _earliest(old, update["first"].get(column))
            if new == old:
                continue
            setattr(row, column, new)
            delivery_id = row.delivery_id
            if old is None:
                deltas.delivery[(delivery_id, scope)][counter] += 1
                deltas.domain[(delivery_id, scope, row.domain)][counter] += 1
            else:
                deltas.bucket[(delivery_id, scope, half_hour_start(old))][counter] -= 1
            deltas.bucket[(delivery_id, scope, half_hour_start(new))][counter] += 1
        merged.append(row)
    MessageRollup.objects.bulk_create(
        merged,
        batch_size=2000,
        update_conflicts=True,
        unique_fields=["message_id"],
        update_fields=[*MESSAGE_COUNTS, *(column for column, _, _ in MESSAGE_FIRSTS)],
    )


LINK_FIRSTS = (("first_click_at", False), ("first_human_click_at", True))


def _merge_links(updates: dict[tuple[int, str, str], dict], deltas: _Deltas) -> None:
    message_ids = {message_id for message_id, _kind, _key in updates}
    existing: dict[tuple[int, str, str], MessageLinkRollup] = {}
    for chunk in _chunks(message_ids):
        existing.update(
            ((row.message_id, row.kind, row.key), row) for row in MessageLinkRollup.objects.filter(message_id__in=chunk)
        )
    before = {key: (row.first_click_at, row.first_human_click_at) for key, row in existing.items()}
    changed = []
    streams_touched: set[tuple[int, bool]] = set()
    for (message_id, kind, key), update in updates.items():
        row = existing.get((message_id, kind, key))
        if row is None:
            row = MessageLinkRollup(message_id=message_id, kind=kind, key=key, delivery_id=update["delivery_id"])
            existing[(message_id, kind, key)] = row
        moved = False
        for column, scope in LINK_FIRSTS:
            old = getattr(row, column)
            new = _earliest(old, update.get(column))
            if new == old:
                continue
            moved = True
            setattr(row, column, new)
            if old is not None:
                deltas.link[(row.delivery_id, scope, kind, key, utc_day(old))]["distinct_clicks"] -= 1
            deltas.link[(row.delivery_id, scope, kind, key, utc_day(new))]["distinct_clicks"] += 1
            if kind == LinkKind.URL:
                streams_touched.add((message_id, scope))
        if moved:
            changed.append(row)

    url_rows: dict[int, list[tuple[str, tuple, MessageLinkRollup]]] = defaultdict(list)
    for (message_id, kind, key), row in existing.items():
        if kind == LinkKind.URL:
            url_rows[message_id].append((key, before.get((message_id, kind, key), (None, None)), row))
    for message_id, scope in streams_touched:
        index = 1 if scope else 0
        column = LINK_FIRSTS[index][0]
        entries = url_rows[message_id]
        delivery_id = entries[0][2].delivery_id
        old_sequence = _click_sequence((key, old_times[index]) for key, old_times, _row in entries)
        new_sequence = _click_sequence((key, getattr(row, column)) for key, _old, row in entries)
        for pair in _pairs(old_sequence):
            deltas.stream[(delivery_id, scope, *pair)]["recipients"] -= 1
        for pair in _pairs(new_sequence):
            deltas.stream[(delivery_id, scope, *pair)]["recipients"] += 1

    MessageLinkRollup.objects.bulk_create(
        changed,
        batch_size=2000,
        update_conflicts=True,
        unique_fields=["message_id", "kind", "key"],
        update_fields=[column for column, _ in LINK_FIRSTS],
    )


PERSON_DOMAINS = (("domain", False), ("human_domain", True))


def _merge_persons(updates: dict[tuple[int, str], dict], deltas: _Deltas) -> None:
    existing: dict[tuple[int, str], PersonRollup] = {}
    by_delivery: dict[int, list[str]] = defaultdict(list)
    for delivery_id, person_key in updates:
        by_delivery[delivery_id].append(person_key)
    for delivery_id, keys in by_delivery.items():
        for chunk in _chunks(keys):
            existing.update(
                ((row.delivery_id, row.person_key), row)
                for row in PersonRollup.objects.filter(delivery_id=delivery_id, person_key__in=chunk)
            )
    changed = []
    for (delivery_id, person_key), update in updates.items():
        row = existing.get((delivery_id, person_key)) or PersonRollup(
            delivery_id=delivery_id, person_key=person_key, domain=None, human_domain=None
        )
        moved = False
        for column, scope in PERSON_DOMAINS:
            old = getattr(row, column)
            new = _smallest(old, update[column])
            if new == old:
                continue
            moved = True
            setattr(row, column, new)
            if old is None:
                deltas.delivery[(delivery_id, scope)]["persons"] += 1
            else:
                deltas.domain[(delivery_id, scope, old)]["persons"] -= 1
            deltas.domain[(delivery_id, scope, new)]["persons"] += 1
        if moved:
            changed.append(row)
    PersonRollup.objects.bulk_create(
        changed,
        batch_size=2000,
        update_conflicts=True,
        unique_fields=["delivery", "person_key"],
        update_fields=["domain", "human_domain"],
    )


def _split_gaps(gaps: list[ConsolidationGap], found_ids: list[int]) -> None:
    """Removes the ids just consolidated from the open gaps."""
    found = sorted(found_ids)
    for gap in gaps:
        inside = [pk for pk in found if gap.first_id <= pk <= gap.last_id]
        if not inside:
            continue
        gap.delete()
        start = gap.first_id
        pieces = []
        for pk in inside:
            if pk > start:
                pieces.append(ConsolidationGap(first_id=start, last_id=pk - 1, noted_at=gap.noted_at))
            start = pk + 1
        if start <= gap.last_id:
            pieces.append(ConsolidationGap(first_id=start, last_id=gap.last_id, noted_at=gap.noted_at))
        ConsolidationGap.objects.bulk_create(pieces)


def _consolidate_batch(state: ConsolidationState, batch_size: int) -> tuple[int, bool]:
    now = timezone.now()
    ConsolidationGap.objects.filter(noted_at__lt=now - GAP_TIME_TO_LIVE).delete()
    gaps = list(ConsolidationGap.objects.order_by("first_id"))
    late_rows: list[tuple] = []
    for chunk in _chunks(gaps, 100):
        in_gaps = Q()
        for gap in chunk:
            in_gaps |= Q(id__gte=gap.first_id, id__lte=gap.last_id)
        late_rows.extend(TrackingEvent.objects.filter(in_gaps).values_list(*EVENT_FIELDS))
    if late_rows:
        _split_gaps(gaps, [row[0] for row in late_rows])

    new_rows = list(TrackingEvent.objects.filter(id__gt=state.pointer).order_by("id").values_list(*EVENT_FIELDS)[:batch_size])
    expected = state.pointer + 1
    new_gaps = []
    for row in new_rows:
        if row[0] > expected:
            new_gaps.append(ConsolidationGap(first_id=expected, last_id=row[0] - 1, noted_at=now))
        expected = row[0] + 1
    ConsolidationGap.objects.bulk_create(new_gaps)

    _apply_events(late_rows + new_rows)
    if new_rows:
        state.pointer = new_rows[-1][0]
    state.consolidated_at = now
    state.save(update_fields=["pointer", "consolidated_at"])
    return len(late_rows) + len(new_rows), len(new_rows) == batch_size


def events_consolidate(*, batch_size: int = BATCH_SIZE, max_batches: int = MAX_BATCHES_PER_RUN) -> int:
    """Consolidates the events committed since the last run, in bounded batches.

    Safe to run twice or concurrently: a run that finds the lock taken returns 0 at once, and each
    event is merged exactly once (pointer plus gaps, committed with the rollups). Returns how many
    events were read.
    """
    total = 0
    for _ in range(max_batches):
        try:
            with _consolidation_lock(wait=False) as state:
                if state is None:
                    return total
                consolidated, more = _consolidate_batch(state, batch_size)
        except OperationalError as error:
            # SQLite: a database locked by another run means that run is busy; this one gives way
            # (its transaction rolled back), as a skipped row lock does on PostgreSQL.
            if _is_postgresql() or "locked" not in str(error):
                raise
            return total
        total += consolidated
        if not more:
            break
    return total


# --- Full recompute (set-based SQL) --------------------------------------------------------------

def _is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def _sql_half_hour(column: str) -> str:
    if _is_postgresql():
        return f"to_timestamp(floor(extract(epoch from {column}) / {HALF_HOUR_SECONDS}) * {HALF_HOUR_SECONDS})"
    return f"datetime(CAST(strftime('%%s', {column}) AS INTEGER) / {HALF_HOUR_SECONDS} * {HALF_HOUR_SECONDS}, 'unixepoch')"


def _sql_day(column: str) -> str:
    if _is_postgresql():
        return f"CAST(({column} AT TIME ZONE 'UTC') AS date)"
    return f"date({column})"


def _sql_binary(expression: str) -> str:
    """Compare as Python does (by code point), whatever the database collation."""
    return f'({expression}) COLLATE "C"' if _is_postgresql() else expression


def _sql_domain(column: str) -> str:
    position = f"strpos({column}, '@')" if _is_postgresql() else f"instr({column}, '@')"
    return (
        f"COALESCE(lower(CASE WHEN {position} = 0 THEN '' "
        f"ELSE substr({column}, {position} + 1, {DOMAIN_LENGTH}) END), '')"
    )


def _as_datetime(value) -> dt.datetime:
    if isinstance(value, str):
        value = parse_datetime(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, dt.UTC)


def _as_date(value) -> dt.date:
    return parse_date(value) if isinstance(value, str) else value


EVENTS_FROM = (
    "FROM tracking_trackingevent e "
    "LEFT JOIN deliveries_message m ON m.id = e.message_id "
    "LEFT JOIN tracking_trackedurl u ON u.id = e.tracked_url_id "
)
IS_CLICK = "(e.type = 'click' AND (u.mode IS NULL OR u.mode NOT IN ('opt_out', 'mirror')))"
HUMAN = "NOT e.is_machine"
LABEL_KEY = f"substr(COALESCE(NULLIF(u.label, ''), u.url, ''), 1, {KEY_LENGTH})"
CATEGORY_KEY = f"substr(COALESCE(u.category, ''), 1, {KEY_LENGTH})"


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _execute(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _rebuild_event_rollups(delivery_id: int) -> None:
    for model in EVENT_ROLLUPS:
        model.objects.filter(delivery_id=delivery_id).delete()
    domain = _sql_domain("m.email")
    d = [delivery_id]
    _execute(
        "INSERT INTO reporting_messagerollup (message_id, delivery_id, domain, opens, human_opens, clicks, "
        "human_clicks, first_open_at, first_human_open_at, first_click_at, first_human_click_at) "
        f"SELECT e.message_id, %s, MAX({domain}), "
        "SUM(CASE WHEN e.type = 'open' THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN e.type = 'open' AND {HUMAN} THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN {IS_CLICK} THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN {IS_CLICK} AND {HUMAN} THEN 1 ELSE 0 END), "
        f"MIN(e.logged_at), MIN(CASE WHEN {HUMAN} THEN e.logged_at END), "
        f"MIN(CASE WHEN {IS_CLICK} THEN e.logged_at END), MIN(CASE WHEN {IS_CLICK} AND {HUMAN} THEN e.logged_at END) "
        f"{EVENTS_FROM} WHERE e.delivery_id = %s AND e.message_id IS NOT NULL AND (e.type = 'open' OR {IS_CLICK}) "
        "GROUP BY e.message_id",
        d + d,
    )
    for kind, key in (
        (LinkKind.URL, "CAST(e.tracked_url_id AS VARCHAR(20))"),
        (LinkKind.LABEL, LABEL_KEY),
        (LinkKind.CATEGORY, CATEGORY_KEY),
    ):
        _execute(
            "INSERT INTO reporting_messagelinkrollup (message_id, kind, key, delivery_id, first_click_at, "
            "first_human_click_at) "
            f"SELECT e.message_id, %s, {key}, %s, MIN(e.logged_at), MIN(CASE WHEN {HUMAN} THEN e.logged_at END) "
            f"{EVENTS_FROM} WHERE e.delivery_id = %s AND e.message_id IS NOT NULL AND e.tracked_url_id IS NOT NULL "
            f"AND {IS_CLICK} GROUP BY e.message_id, {key}",
            [kind.value, delivery_id, delivery_id],
        )
    person_key = "COALESCE(NULLIF(e.browser_id, ''), 'm' || CAST(e.message_id AS VARCHAR(20)))"
    _execute(
        "INSERT INTO reporting_personrollup (delivery_id, person_key, domain, human_domain) "
        f"SELECT %s, person_key, MIN({_sql_binary('dom')}), MIN({_sql_binary(f'CASE WHEN NOT is_machine THEN dom END')}) "
        f"FROM (SELECT {person_key} AS person_key, {domain} AS dom, e.is_machine {EVENTS_FROM} "
        f"WHERE e.delivery_id = %s AND {IS_CLICK}) clicks WHERE person_key IS NOT NULL GROUP BY person_key",
        d + d,
    )

    deltas = _Deltas()
    for is_machine, dom, opens, clicks, opt_outs, mirrors in _fetch(
        f"SELECT e.is_machine, {domain} AS dom, SUM(CASE WHEN e.type = 'open' THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN {IS_CLICK} THEN 1 ELSE 0 END), SUM(CASE WHEN e.type = 'opt_out' THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN e.type = 'mirror' THEN 1 ELSE 0 END) {EVENTS_FROM} WHERE e.delivery_id = %s "
        "GROUP BY e.is_machine, dom",
        d,
    ):
        counts = Counter(opens=opens, clicks=clicks, opt_outs=opt_outs, mirror_page_views=mirrors)
        for scope in scopes_of(bool(is_machine)):
            deltas.delivery[(delivery_id, scope)].update(counts)
            deltas.domain[(delivery_id, scope, dom)].update(counts)
    for is_machine, bucket, opens, clicks in _fetch(
        f"SELECT e.is_machine, {_sql_half_hour('e.logged_at')} AS bucket, "
        f"SUM(CASE WHEN e.type = 'open' THEN 1 ELSE 0 END), SUM(CASE WHEN {IS_CLICK} THEN 1 ELSE 0 END) "
        f"{EVENTS_FROM} WHERE e.delivery_id = %s AND (e.type = 'open' OR {IS_CLICK}) GROUP BY e.is_machine, bucket",
        d,
    ):
        for scope in scopes_of(bool(is_machine)):
            deltas.bucket[(delivery_id, scope, _as_datetime(bucket))].update(Counter(opens=opens, clicks=clicks))
    for is_machine, user_agent_id, opens in _fetch(
        "SELECT e.is_machine, COALESCE(e.user_agent_id, 0) AS ua, COUNT(*) FROM tracking_trackingevent e "
        "WHERE e.delivery_id = %s AND e.type = 'open' GROUP BY e.is_machine, ua",
        d,
    ):
        for scope in scopes_of(bool(is_machine)):
            deltas.user_agent[(delivery_id, scope, user_agent_id)]["opens"] += opens
    for is_machine, url_id, label, category, day, clicks in _fetch(
        f"SELECT e.is_machine, e.tracked_url_id, MAX({LABEL_KEY}), MAX({CATEGORY_KEY}), {_sql_day('e.logged_at')} AS day, "
        f"COUNT(*) {EVENTS_FROM} WHERE e.delivery_id = %s AND e.tracked_url_id IS NOT NULL AND {IS_CLICK} "
        "GROUP BY e.is_machine, e.tracked_url_id, day",
        d,
    ):
        for scope in scopes_of(bool(is_machine)):
            for kind, key in ((LinkKind.URL, str(url_id)), (LinkKind.LABEL, label), (LinkKind.CATEGORY, category)):
                deltas.link[(delivery_id, scope, kind, key, _as_date(day))]["clicks"] += clicks
    for column, scope, counter in MESSAGE_FIRSTS:
        for dom, bucket, recipients in _fetch(
            f"SELECT domain, {_sql_half_hour(column)} AS bucket, COUNT(*) FROM reporting_messagerollup "
            f"WHERE delivery_id = %s AND {column} IS NOT NULL GROUP BY domain, bucket",
            d,
        ):
            deltas.delivery[(delivery_id, scope)][counter] += recipients
            deltas.domain[(delivery_id, scope, dom)][counter] += recipients
            deltas.bucket[(delivery_id, scope, _as_datetime(bucket))][counter] += recipients
    for column, scope in LINK_FIRSTS:
        for kind, key, day, recipients in _fetch(
            f"SELECT kind, key, {_sql_day(column)} AS day, COUNT(*) FROM reporting_messagelinkrollup "
            f"WHERE delivery_id = %s AND {column} IS NOT NULL GROUP BY kind, key, day",
            d,
        ):
            deltas.link[(delivery_id, scope, kind, key, _as_date(day))]["distinct_clicks"] += recipients
        for from_key, to_key, recipients in _fetch(
            f"SELECT from_key, to_key, COUNT(*) FROM (SELECT key AS from_key, LEAD(key) OVER "
            f"(PARTITION BY message_id ORDER BY {column}, {_sql_binary('key')}) AS to_key "
            f"FROM reporting_messagelinkrollup WHERE delivery_id = %s AND kind = 'url' AND {column} IS NOT NULL) "
            "pairs WHERE to_key IS NOT NULL GROUP BY from_key, to_key",
            d,
        ):
            deltas.stream[(delivery_id, scope, int(from_key), int(to_key))]["recipients"] += recipients
    for column, scope in PERSON_DOMAINS:
        for dom, persons in _fetch(
            f"SELECT {column}, COUNT(*) FROM reporting_personrollup WHERE delivery_id = %s AND {column} IS NOT NULL "
            f"GROUP BY {column}",
            d,
        ):
            deltas.delivery[(delivery_id, scope)]["persons"] += persons
            deltas.domain[(delivery_id, scope, dom)]["persons"] += persons
    deltas.write()


def delivery_recompute(*, delivery_id: int) -> Delivery:
    """"Recompute delivery and tracking indicators": rebuilds the delivery's rollups from its raw events
    and its counters and statistics from its messages, in one transaction.

    Links deleted since their events were consolidated are grouped as deleted links afterwards.
    Refused (409) once retention has purged some of the delivery's raw events: the rebuild would lose
    them, while the rollups still hold them.
    """
    report_state = DeliveryReportState.objects.filter(delivery_id=delivery_id).first()
    if report_state is not None and report_state.events_purged_before is not None:
        raise TransitionNotAllowed(
            "Raw events of this delivery older than the retention period were purged; "
            "its indicators can no longer be rebuilt from them.",
        )
    with _consolidation_lock(wait=True):
        delivery = Delivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None:
            raise NotFound("No such delivery.")
        _rebuild_event_rollups(delivery_id)
        _refresh_delivery_counters(delivery)
        delivery_message_stats_refresh(delivery_id=delivery_id)
    return delivery


# --- Statistics from the delivery log ------------------------------------------------------------

def _messages_with_domain(delivery_id: int) -> models.QuerySet:
    """The delivery's messages annotated with `domain`, as `email_domain` computes it."""
    return (
        Message.objects.filter(delivery_id=delivery_id)
        .annotate(at_position=StrIndex("email", Value("@")))
        .annotate(
            domain=models.Case(
                models.When(at_position=0, then=Value("")),
                default=Lower(Substr("email", F("at_position") + 1, DOMAIN_LENGTH)),
                output_field=models.CharField(),
            )
        )
    )


def _refresh_delivery_counters(delivery: Delivery) -> None:
    """The delivery's counters as its messages say (the counters are maintained while sending)."""
    counts = Message.objects.filter(delivery_id=delivery.pk).aggregate(
        to_deliver=Count("id", filter=~Q(status=MessageStatus.IGNORED)),
        success=Count("id", filter=Q(status=MessageStatus.SENT)),
        errors=Count("id", filter=Q(status=MessageStatus.FAILED)),
    )
    delivery.to_deliver = counts["to_deliver"]
    delivery.success = counts["success"]
    delivery.errors = counts["errors"]
    delivery.processed = counts["success"] + counts["errors"]
    delivery.save(update_fields=["to_deliver", "success", "errors", "processed", "updated_at"])


def delivery_message_stats_refresh(*, delivery_id: int) -> None:
    """Rebuilds the delivery-log statistics (per domain, failures, throughput) of one delivery."""
    delivery = Delivery.objects.filter(pk=delivery_id).first()
    if delivery is None:
        return
    messages = _messages_with_domain(delivery_id)
    not_ignored = ~Q(status=MessageStatus.IGNORED)
    failed = Q(status=MessageStatus.FAILED)
    domain_rows = [
        DomainMessageStats(delivery_id=delivery_id, **row)
        for row in messages.values("domain").annotate(
            to_deliver=Count("id", filter=not_ignored),
            text_messages=Count("id", filter=not_ignored & Q(email_format="text")),
            success=Count("id", filter=Q(status=MessageStatus.SENT)),
            errors=Count("id", filter=failed),
            hard_bounces=Count("id", filter=failed & Q(failure_type=FailureType.HARD)),
            soft_bounces=Count("id", filter=failed & Q(failure_type=FailureType.SOFT)),
        ).order_by()
    ]
    failure_rows = [
        FailureStats(delivery_id=delivery_id, **row)
        for row in messages.filter(status__in=[MessageStatus.FAILED, MessageStatus.IGNORED])
        .values("status", "failure_type", "failure_reason", "domain")
        .annotate(messages=Count("id"))
        .order_by()
    ]
    throughput_rows = [
        ThroughputStats(delivery_id=delivery_id, **row)
        for row in Message.objects.filter(delivery_id=delivery_id, status__in=[MessageStatus.SENT, MessageStatus.FAILED])
        .annotate(hour=TruncHour(Coalesce("sent_at", "claimed_at")))
        .exclude(hour=None)
        .values("hour")
        .annotate(
            success=Count("id", filter=Q(status=MessageStatus.SENT)),
            errors=Count("id", filter=failed),
        )
        .order_by()
    ]
    since = delivery.sending_started_at or delivery.created_at
    new_quarantines = Message.objects.filter(
        delivery_id=delivery_id,
        status=MessageStatus.FAILED,
        profile__email_status=EmailStatus.QUARANTINED,
        profile__quarantined_at__gte=since,
    ).count()
    with transaction.atomic():
        for model in (DomainMessageStats, FailureStats, ThroughputStats):
            model.objects.filter(delivery_id=delivery_id).delete()
        DomainMessageStats.objects.bulk_create(domain_rows)
        FailureStats.objects.bulk_create(failure_rows)
        ThroughputStats.objects.bulk_create(throughput_rows)
        DeliveryReportState.objects.update_or_create(
            delivery_id=delivery_id,
            defaults={
                "text_messages": sum(row.text_messages for row in domain_rows),
                "new_quarantines": new_quarantines,
                "refreshed_at": timezone.now(),
                "refreshed_from": _counters_of(delivery),
            },
        )


def _counters_of(delivery: Delivery) -> dict:
    return {
        "status": delivery.status,
        "to_deliver": delivery.to_deliver,
        "processed": delivery.processed,
        "success": delivery.success,
        "errors": delivery.errors,
    }


def message_stats_refresh_due() -> int:
    """Refreshes the statistics of deliveries sending, or whose counters moved since the last refresh."""
    refreshed_from = dict(DeliveryReportState.objects.values_list("delivery_id", "refreshed_from"))
    refreshed = 0
    for delivery in Delivery.objects.exclude(status=DeliveryStatus.DRAFT).only(
        "id", "status", "to_deliver", "processed", "success", "errors"
    ):
        if delivery.status in SENDING_STATUSES or refreshed_from.get(delivery.pk) != _counters_of(delivery):
            delivery_message_stats_refresh(delivery_id=delivery.pk)
            refreshed += 1
    return refreshed


def reports_refresh() -> int:
    """The every-minute job: consolidates new events, then refreshes delivery-log statistics."""
    consolidated = events_consolidate()
    message_stats_refresh_due()
    return consolidated


# --- Retention -----------------------------------------------------------------------------------

def events_purge_expired(*, batch_size: int = PURGE_BATCH_SIZE, max_batches: int = PURGE_MAX_BATCHES) -> int:
    """Deletes raw events older than `BEACON_EVENT_RETENTION_DAYS`, only once consolidated, in bounded
    batches. Rollups keep their figures; the deliveries concerned are marked so no recompute loses them.
    """
    cutoff = timezone.now() - dt.timedelta(days=settings.BEACON_EVENT_RETENTION_DAYS)
    events_consolidate()
    purged = 0
    for _ in range(max_batches):
        with _consolidation_lock(wait=True) as state:
            gaps = list(ConsolidationGap.objects.values_list("first_id", "last_id"))
            candidates = TrackingEvent.objects.filter(logged_at__lt=cutoff, id__lte=state.pointer).order_by("id")
            rows = [
                (pk, delivery_id)
                for pk, delivery_id in candidates.values_list("id", "delivery_id")[:batch_size]
                if not any(first <= pk <= last for first, last in gaps)
            ]
            if not rows:
                break
            TrackingEvent.objects.filter(id__in=[pk for pk, _ in rows]).delete()
            for delivery_id in {delivery_id for _, delivery_id in rows if delivery_id is not None}:
                if Delivery.objects.filter(pk=delivery_id).exists():
                    DeliveryReportState.objects.update_or_create(
                        delivery_id=delivery_id, defaults={"events_purged_before": cutoff}
                    )
        purged += len(rows)
        if len(rows) < batch_size:
            break
    return purged
