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
import io
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


def _click_sequence(times: dict[int, dt.datetime | None]) -> list[int]:
    """A recipient's tracked URLs in the order of their first clicks; ties by URL id."""
    return [url_id for url_id, at in sorted(((u, t) for u, t in times.items() if t is not None), key=lambda r: (r[1], r[0]))]


def _pairs(sequence: list[int]) -> list[tuple[int, int]]:
    return list(zip(sequence, sequence[1:]))


def _firsts_by_key(times: dict[int, dt.datetime | None], keys_of: dict[int, list], kind_index: int) -> dict[str, dt.datetime]:
    """The first click per link key (URL, label or category) from the first clicks per URL."""
    firsts: dict[str, dt.datetime] = {}
    for url_id, at in times.items():
        if at is not None:
            key = keys_of[url_id][kind_index][1]
            firsts[key] = _earliest(firsts.get(key), at)
    return firsts


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
    link_updates: dict[tuple[int, int], dict] = {}
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
                if url_id is not None:
                    link = link_updates.setdefault((message_id, url_id), {"delivery_id": delivery_id})
                    link["first_click_at"] = _earliest(link.get("first_click_at"), logged_at)
                    link["first_human_click_at"] = _earliest(link.get("first_human_click_at"), human_at)
        if not is_open:
            person_key = browser_id or (f"m{message_id}" if message_id is not None else "")
            if person_key:
                person = person_updates.setdefault((delivery_id, person_key), {})
                person["domain"] = _smallest(person.get("domain"), domain)
                person["human_domain"] = _smallest(person.get("human_domain"), None if is_machine else domain)

    _merge_messages(message_updates, deltas)
    _merge_links(link_updates, urls, deltas)
    _merge_persons(person_updates, deltas)
    deltas.write()
    return len(rows)


def _copy_text(value) -> str:
    """A value in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return str(value)


def _write_rows(model: type[models.Model], key_fields: tuple[str, ...], fields: tuple[str, ...], rows: list[tuple]) -> None:
    """Inserts rows (values of `fields`) or overwrites the row of the same key. Raw SQL: model instances
    cost more than the whole merge; on PostgreSQL the rows go through COPY into a staging table, several
    times faster than a long VALUES list."""
    if not rows:
        return
    model_fields = [model._meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(f.column) for f in model_fields)
    conflict = ", ".join(quote(model._meta.get_field(name).column) for name in key_fields)
    updates = ", ".join(
        f"{quote(f.column)} = excluded.{quote(f.column)}" for f in model_fields if f.name not in key_fields
    )
    upsert = f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
    with connection.cursor() as cursor:
        if _is_postgresql():
            staging = quote(f"staging_{model._meta.db_table}")
            cursor.execute(f"CREATE TEMPORARY TABLE {staging} ON COMMIT DROP AS SELECT {columns} FROM {table} WITH NO DATA")
            cursor.copy_expert(
                f"COPY {staging} ({columns}) FROM STDIN",
                io.StringIO("".join("\t".join(map(_copy_text, row)) + "\n" for row in rows)),
            )
            cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {staging} {upsert}")
            cursor.execute(f"DROP TABLE {staging}")
            return
        adapters = [
            connection.ops.adapt_datetimefield_value if isinstance(f, models.DateTimeField) else None
            for f in model_fields
        ]
        row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
        for start in range(0, len(rows), 1000):
            chunk = rows[start:start + 1000]
            params = []
            for row in chunk:
                params.extend(adapt(value) if adapt and value is not None else value for adapt, value in zip(adapters, row))
            cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {', '.join([row_sql] * len(chunk))} {upsert}", params)


# (first-time column, humans_only, counter of the small tables)
MESSAGE_FIRSTS = (
    ("first_open_at", False, "distinct_opens"),
    ("first_human_open_at", True, "distinct_opens"),
    ("first_click_at", False, "distinct_clicks"),
    ("first_human_click_at", True, "distinct_clicks"),
)
MESSAGE_COUNTS = ("opens", "human_opens", "clicks", "human_clicks")
MESSAGE_FIELDS = ("message_id", "delivery_id", "domain", *MESSAGE_COUNTS, *(column for column, _, _ in MESSAGE_FIRSTS))


def _merge_messages(updates: dict[int, dict], deltas: _Deltas) -> None:
    existing: dict[int, dict] = {}
    for chunk in _chunks(updates, 5000):
        for values in MessageRollup.objects.filter(message_id__in=chunk).values_list(*MESSAGE_FIELDS):
            existing[values[0]] = dict(zip(MESSAGE_FIELDS, values))
    merged = []
    for message_id, update in updates.items():
        row = existing.get(message_id)
        if row is None:
            row = dict.fromkeys(MESSAGE_FIELDS) | dict.fromkeys(MESSAGE_COUNTS, 0)
            row |= {"message_id": message_id, "delivery_id": update["delivery_id"], "domain": update["domain"]}
        counts = update["counts"]
        for name in MESSAGE_COUNTS:
            row[name] += counts[name]
        delivery_id = row["delivery_id"]
        for column, scope, counter in MESSAGE_FIRSTS:
            old = row[column]
            new = _earliest(old, update["first"].get(column))
            if new == old:
                continue
            row[column] = new
            if old is None:
                deltas.delivery[(delivery_id, scope)][counter] += 1
                deltas.domain[(delivery_id, scope, row["domain"])][counter] += 1
            else:
                deltas.bucket[(delivery_id, scope, half_hour_start(old))][counter] -= 1
            deltas.bucket[(delivery_id, scope, half_hour_start(new))][counter] += 1
        merged.append(tuple(row[name] for name in MESSAGE_FIELDS))
    _write_rows(MessageRollup, ("message_id",), MESSAGE_FIELDS, merged)


LINK_FIRSTS = (("first_click_at", False), ("first_human_click_at", True))
LINK_FIELDS = ("message_id", "tracked_url_id", "delivery_id", "first_click_at", "first_human_click_at")


def _merge_links(updates: dict[tuple[int, int], dict], urls: dict[int, tuple], deltas: _Deltas) -> None:
    """Merges first clicks per message and URL, then moves, for each message whose first clicks changed,
    the distinct clicks of its URLs, labels and categories and its click-stream pairs."""
    existing: dict[int, dict[int, list]] = defaultdict(dict)
    for chunk in _chunks({message_id for message_id, _url_id in updates}, 5000):
        for message_id, url_id, delivery_id, first, human_first in MessageLinkRollup.objects.filter(
            message_id__in=chunk
        ).values_list(*LINK_FIELDS):
            existing[message_id][url_id] = [delivery_id, first, human_first]
    known_urls = {url_id for rows in existing.values() for url_id in rows} | {url_id for _m, url_id in updates}
    missing = known_urls - urls.keys()
    urls = dict(urls)
    for chunk in _chunks(missing):
        urls.update(
            (pk, rest) for pk, *rest in TrackedUrl.objects.filter(id__in=chunk).values_list("id", "mode", "label", "url", "category")
        )
    keys_of = {url_id: _link_keys(url_id, urls.get(url_id)) for url_id in known_urls}
    before = {message_id: {url_id: tuple(row) for url_id, row in rows.items()} for message_id, rows in existing.items()}

    changed = []
    touched: set[int] = set()
    for (message_id, url_id), update in updates.items():
        row = existing[message_id].get(url_id)
        if row is None:
            row = existing[message_id][url_id] = [update["delivery_id"], None, None]
        new_times = [_earliest(row[index], update.get(column)) for index, (column, _) in enumerate(LINK_FIRSTS, start=1)]
        if new_times != row[1:]:
            row[1:] = new_times
            changed.append((message_id, url_id, *row))
            touched.add(message_id)

    for message_id in touched:
        rows, old_rows = existing[message_id], before.get(message_id, {})
        delivery_id = next(iter(rows.values()))[0]
        for index, (_column, scope) in enumerate(LINK_FIRSTS, start=1):
            old_times = {url_id: old_rows[url_id][index] if url_id in old_rows else None for url_id in rows}
            new_times = {url_id: row[index] for url_id, row in rows.items()}
            if old_times == new_times:
                continue
            for kind_index, kind in enumerate(LinkKind.values):
                old_firsts = _firsts_by_key(old_times, keys_of, kind_index)
                for key, new in _firsts_by_key(new_times, keys_of, kind_index).items():
                    old = old_firsts.get(key)
                    if new == old:
                        continue
                    if old is not None:
                        deltas.link[(delivery_id, scope, kind, key, utc_day(old))]["distinct_clicks"] -= 1
                    deltas.link[(delivery_id, scope, kind, key, utc_day(new))]["distinct_clicks"] += 1
            for pair in _pairs(_click_sequence(old_times)):
                deltas.stream[(delivery_id, scope, *pair)]["recipients"] -= 1
            for pair in _pairs(_click_sequence(new_times)):
                deltas.stream[(delivery_id, scope, *pair)]["recipients"] += 1
    _write_rows(MessageLinkRollup, ("message_id", "tracked_url_id"), LINK_FIELDS, changed)


PERSON_DOMAINS = (("domain", False), ("human_domain", True))


def _merge_persons(updates: dict[tuple[int, str], dict], deltas: _Deltas) -> None:
    existing: dict[tuple[int, str], list] = {}
    by_delivery: dict[int, list[str]] = defaultdict(list)
    for delivery_id, person_key in updates:
        by_delivery[delivery_id].append(person_key)
    for delivery_id, keys in by_delivery.items():
        for chunk in _chunks(keys, 5000):
            for person_key, domain, human_domain in PersonRollup.objects.filter(
                delivery_id=delivery_id, person_key__in=chunk
            ).values_list("person_key", "domain", "human_domain"):
                existing[(delivery_id, person_key)] = [domain, human_domain]
    changed = []
    for (delivery_id, person_key), update in updates.items():
        row = existing.get((delivery_id, person_key)) or [None, None]
        moved = False
        for index, (column, scope) in enumerate(PERSON_DOMAINS):
            old = row[index]
            new = _smallest(old, update[column])
            if new == old:
                continue
            moved = True
            row[index] = new
            if old is None:
                deltas.delivery[(delivery_id, scope)]["persons"] += 1
            else:
                deltas.domain[(delivery_id, scope, old)]["persons"] -= 1
            deltas.domain[(delivery_id, scope, new)]["persons"] += 1
        if moved:
            changed.append((delivery_id, person_key, *row))
    _write_rows(PersonRollup, ("delivery", "person_key"), ("delivery", "person_key", "domain", "human_domain"), changed)


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


IS_CLICK = "(e.type = 'click' AND (u.mode IS NULL OR u.mode NOT IN ('opt_out', 'mirror')))"
HUMAN = "NOT is_machine"
LABEL_KEY = f"substr(COALESCE(NULLIF(u.label, ''), u.url, ''), 1, {KEY_LENGTH})"
CATEGORY_KEY = f"substr(COALESCE(u.category, ''), 1, {KEY_LENGTH})"
# The delivery's consolidated events, read once with their recipient domain and whether they count as
# a click; every rollup is then built from this narrow table.
RECOMPUTE_EVENTS = "reporting_recompute_events"


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _execute(sql: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _rebuild_event_rollups(delivery_id: int) -> None:
    for model in EVENT_ROLLUPS:
        model.objects.filter(delivery_id=delivery_id).delete()
    if _is_postgresql():
        # Large hash aggregates in memory rather than spilled to disk; this transaction only.
        _execute("SET LOCAL work_mem = '256MB'")
    _execute(f"DROP TABLE IF EXISTS {RECOMPUTE_EVENTS}")
    _execute(
        f"CREATE TEMPORARY TABLE {RECOMPUTE_EVENTS} AS "
        f"SELECT e.message_id, e.type, e.logged_at, e.is_machine, e.tracked_url_id, e.user_agent_id, e.browser_id, "
        f"{_sql_domain('m.email')} AS domain, CASE WHEN {IS_CLICK} THEN 1 ELSE 0 END AS is_click "
        "FROM tracking_trackingevent e "
        "LEFT JOIN deliveries_message m ON m.id = e.message_id "
        "LEFT JOIN tracking_trackedurl u ON u.id = e.tracked_url_id "
        "WHERE e.delivery_id = %s AND e.type IN ('open', 'click', 'opt_out', 'mirror')",
        [delivery_id],
    )
    events = RECOMPUTE_EVENTS
    d = [delivery_id]
    _execute(
        "INSERT INTO reporting_messagerollup (message_id, delivery_id, domain, opens, human_opens, clicks, "
        "human_clicks, first_open_at, first_human_open_at, first_click_at, first_human_click_at) "
        "SELECT message_id, %s, MAX(domain), "
        "SUM(CASE WHEN type = 'open' THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN type = 'open' AND {HUMAN} THEN 1 ELSE 0 END), "
        "SUM(is_click), "
        f"SUM(CASE WHEN is_click = 1 AND {HUMAN} THEN 1 ELSE 0 END), "
        f"MIN(logged_at), MIN(CASE WHEN {HUMAN} THEN logged_at END), "
        f"MIN(CASE WHEN is_click = 1 THEN logged_at END), MIN(CASE WHEN is_click = 1 AND {HUMAN} THEN logged_at END) "
        f"FROM {events} WHERE message_id IS NOT NULL AND (type = 'open' OR is_click = 1) GROUP BY message_id",
        d,
    )
    _execute(
        "INSERT INTO reporting_messagelinkrollup (message_id, tracked_url_id, delivery_id, first_click_at, "
        "first_human_click_at) "
        f"SELECT message_id, tracked_url_id, %s, MIN(logged_at), MIN(CASE WHEN {HUMAN} THEN logged_at END) "
        f"FROM {events} WHERE message_id IS NOT NULL AND tracked_url_id IS NOT NULL AND is_click = 1 "
        "GROUP BY message_id, tracked_url_id",
        d,
    )
    person_key = "COALESCE(NULLIF(browser_id, ''), 'm' || CAST(message_id AS VARCHAR(20)))"
    _execute(
        "INSERT INTO reporting_personrollup (delivery_id, person_key, domain, human_domain) "
        f"SELECT %s, {person_key}, MIN({_sql_binary('domain')}), MIN({_sql_binary(f'CASE WHEN {HUMAN} THEN domain END')}) "
        f"FROM {events} WHERE is_click = 1 AND {person_key} IS NOT NULL GROUP BY {person_key}",
        d,
    )

    deltas = _Deltas()
    for is_machine, dom, opens, clicks, opt_outs, mirrors in _fetch(
        "SELECT is_machine, domain, SUM(CASE WHEN type = 'open' THEN 1 ELSE 0 END), SUM(is_click), "
        "SUM(CASE WHEN type = 'opt_out' THEN 1 ELSE 0 END), SUM(CASE WHEN type = 'mirror' THEN 1 ELSE 0 END) "
        f"FROM {events} GROUP BY is_machine, domain",
        [],
    ):
        counts = Counter(opens=opens, clicks=clicks, opt_outs=opt_outs, mirror_page_views=mirrors)
        for scope in scopes_of(bool(is_machine)):
            deltas.delivery[(delivery_id, scope)].update(counts)
            deltas.domain[(delivery_id, scope, dom)].update(counts)
    for is_machine, bucket, opens, clicks in _fetch(
        f"SELECT is_machine, {_sql_half_hour('logged_at')} AS bucket, SUM(CASE WHEN type = 'open' THEN 1 ELSE 0 END), "
        f"SUM(is_click) FROM {events} WHERE type = 'open' OR is_click = 1 GROUP BY is_machine, bucket",
        [],
    ):
        for scope in scopes_of(bool(is_machine)):
            deltas.bucket[(delivery_id, scope, _as_datetime(bucket))].update(Counter(opens=opens, clicks=clicks))
    for is_machine, user_agent_id, opens in _fetch(
        f"SELECT is_machine, COALESCE(user_agent_id, 0) AS ua, COUNT(*) FROM {events} WHERE type = 'open' "
        "GROUP BY is_machine, ua",
        [],
    ):
        for scope in scopes_of(bool(is_machine)):
            deltas.user_agent[(delivery_id, scope, user_agent_id)]["opens"] += opens
    urls = {
        pk: (mode, label, address, category)
        for pk, mode, label, address, category in TrackedUrl.objects.filter(delivery_id=delivery_id).values_list(
            "id", "mode", "label", "url", "category"
        )
    }
    for is_machine, url_id, day, clicks in _fetch(
        f"SELECT is_machine, tracked_url_id, {_sql_day('logged_at')} AS day, COUNT(*) FROM {events} "
        "WHERE tracked_url_id IS NOT NULL AND is_click = 1 GROUP BY is_machine, tracked_url_id, day",
        [],
    ):
        for scope in scopes_of(bool(is_machine)):
            for kind, key in _link_keys(url_id, urls.get(url_id)):
                deltas.link[(delivery_id, scope, kind, key, _as_date(day))]["clicks"] += clicks
    _execute(f"DROP TABLE {RECOMPUTE_EVENTS}")

    for column, scope, counter in MESSAGE_FIRSTS:
        for dom, bucket, recipients in _fetch(
            f"SELECT domain, {_sql_half_hour(column)} AS bucket, COUNT(*) FROM reporting_messagerollup "
            f"WHERE delivery_id = %s AND {column} IS NOT NULL GROUP BY domain, bucket",
            d,
        ):
            deltas.delivery[(delivery_id, scope)][counter] += recipients
            deltas.domain[(delivery_id, scope, dom)][counter] += recipients
            deltas.bucket[(delivery_id, scope, _as_datetime(bucket))][counter] += recipients
    link_keys = {url_id: _link_keys(url_id, urls.get(url_id)) for url_id in urls}
    for column, scope in LINK_FIRSTS:
        # First click per message and label/category: the earliest over the message's URLs in it.
        firsts: Counter = Counter()
        for url_id, day, recipients in _fetch(
            f"SELECT tracked_url_id, {_sql_day(column)} AS day, COUNT(*) FROM reporting_messagelinkrollup "
            f"WHERE delivery_id = %s AND {column} IS NOT NULL GROUP BY tracked_url_id, day",
            d,
        ):
            firsts[(LinkKind.URL.value, str(url_id), _as_date(day))] += recipients
        for kind_index, kind in ((1, LinkKind.LABEL), (2, LinkKind.CATEGORY)):
            for key, day, recipients in _fetch_group_firsts(delivery_id, column, link_keys, kind_index):
                firsts[(kind.value, key, day)] += recipients
        for (kind, key, day), recipients in firsts.items():
            deltas.link[(delivery_id, scope, kind, key, day)]["distinct_clicks"] += recipients
        for from_url, to_url, recipients in _fetch(
            f"SELECT from_url, to_url, COUNT(*) FROM (SELECT tracked_url_id AS from_url, LEAD(tracked_url_id) OVER "
            f"(PARTITION BY message_id ORDER BY {column}, tracked_url_id) AS to_url "
            f"FROM reporting_messagelinkrollup WHERE delivery_id = %s AND {column} IS NOT NULL) "
            "pairs WHERE to_url IS NOT NULL GROUP BY from_url, to_url",
            d,
        ):
            deltas.stream[(delivery_id, scope, from_url, to_url)]["recipients"] += recipients
    for column, scope in PERSON_DOMAINS:
        for dom, persons in _fetch(
            f"SELECT {column}, COUNT(*) FROM reporting_personrollup WHERE delivery_id = %s AND {column} IS NOT NULL "
            f"GROUP BY {column}",
            d,
        ):
            deltas.delivery[(delivery_id, scope)]["persons"] += persons
            deltas.domain[(delivery_id, scope, dom)]["persons"] += persons
    deltas.write()


def _fetch_group_firsts(delivery_id: int, column: str, link_keys: dict[int, list], kind_index: int) -> list[tuple]:
    """(key, day, recipients) of first clicks per label or category, for the URLs grouped under keys.

    URLs no longer in the delivery (deleted) fall under the empty key, as in consolidation.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for url_id, keys in link_keys.items():
        groups[keys[kind_index][1]].append(url_id)
    # Each URL's group as a CASE over ids: the delivery has few links.
    cases = " ".join(
        f"WHEN tracked_url_id IN ({', '.join(str(url_id) for url_id in ids)}) THEN %s" for ids in groups.values()
    )
    group_expression = f"CASE {cases} ELSE '' END" if groups else "''"
    rows = _fetch(
        f"SELECT group_key, {_sql_day('first_at')} AS day, COUNT(*) FROM (SELECT message_id, {group_expression} AS group_key, "
        f"MIN({column}) AS first_at FROM reporting_messagelinkrollup WHERE delivery_id = %s AND {column} IS NOT NULL "
        "GROUP BY message_id, group_key) firsts GROUP BY group_key, day",
        [*groups.keys(), delivery_id],
    )
    return [(key, _as_date(day), recipients) for key, day, recipients in rows]


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
