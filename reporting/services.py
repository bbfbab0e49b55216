"""Consolidation of tracking events into rollups, full recompute, delivery-log statistics, retention.

One set-based merge (`_apply_event_batch`, SQL portable between PostgreSQL and SQLite) folds a set of
events into the rollups: additive counters are added, per-message, per-link and per-person rows keep
first times, and a first time appearing or moving to an earlier bucket moves the distinct counters
(see `reporting.models`). Two callers, which must agree number for number (a test checks it):

- `events_consolidate` (every minute) merges the events committed since a stored pointer, in bounded
  batches, plus late commits found in the gaps it tracks;
- `delivery_recompute` deletes one delivery's rollups and merges all its events as one batch.

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
from tracking.models import TrackedUrl, TrackingEvent

STATE_NAME = "events"
BATCH_SIZE = 50_000
MAX_BATCHES_PER_RUN = 50
# Ingestion transactions last milliseconds; an id missing for this long was rolled back.
GAP_TIME_TO_LIVE = dt.timedelta(minutes=30)
PURGE_BATCH_SIZE = 10_000
PURGE_MAX_BATCHES = 100
HALF_HOUR_SECONDS = 1800
KEY_LENGTH = 300
DOMAIN_LENGTH = 255
SENDING_STATUSES = (DeliveryStatus.SENDING, DeliveryStatus.PAUSED)

EVENT_ROLLUPS = (
    DeliveryRollup, DomainRollup, TimeBucketRollup, LinkRollup, ClickStreamRollup, UserAgentRollup,
    MessageRollup, MessageLinkRollup, PersonRollup,
)


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
    # The ids of the batch are read once into a table, and the batch is exactly those rows: an id that
    # commits meanwhile stays in its gap, for the next run.
    _execute(f"DROP TABLE IF EXISTS {BATCH_IDS}")
    _create_temporary(
        BATCH_IDS, "SELECT id FROM tracking_trackingevent WHERE id > %s ORDER BY id LIMIT %s", [state.pointer, batch_size]
    )
    for chunk in _chunks(gaps, 100):
        ranges = " OR ".join(f"id BETWEEN {int(gap.first_id)} AND {int(gap.last_id)}" for gap in chunk)
        _execute(f"INSERT INTO {BATCH_IDS} (id) SELECT id FROM tracking_trackingevent WHERE {ranges}")
    ids = [pk for (pk,) in _fetch(f"SELECT id FROM {BATCH_IDS} ORDER BY id")]
    late_ids = [pk for pk in ids if pk <= state.pointer]
    new_ids = [pk for pk in ids if pk > state.pointer]
    if late_ids:
        _split_gaps(gaps, late_ids)
    expected = state.pointer + 1
    new_gaps = []
    for pk in new_ids:
        if pk > expected:
            new_gaps.append(ConsolidationGap(first_id=expected, last_id=pk - 1, noted_at=now))
        expected = pk + 1
    ConsolidationGap.objects.bulk_create(new_gaps)

    if ids:
        # The bounds let the planner read a range of the primary key rather than the whole table.
        _apply_event_batch(f"e.id BETWEEN %s AND %s AND e.id IN (SELECT id FROM {BATCH_IDS})", [ids[0], ids[-1]])
    _execute(f"DROP TABLE {BATCH_IDS}")
    if new_ids:
        state.pointer = new_ids[-1]
    state.consolidated_at = now
    state.save(update_fields=["pointer", "consolidated_at"])
    return len(late_ids) + len(new_ids), len(new_ids) == batch_size


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
PERSON_KEY = "COALESCE(NULLIF(browser_id, ''), 'm' || CAST(message_id AS VARCHAR(20)))"
# Temporary tables of one merge, dropped at its end.
BATCH_IDS = "reporting_batch_ids"
BATCH = "reporting_batch_events"
BATCH_MESSAGES = "reporting_batch_messages"
BATCH_LINKS = "reporting_batch_links"
OLD_LINKS = "reporting_old_links"
NEW_LINKS = "reporting_new_links"
BATCH_PERSONS = "reporting_batch_persons"
TEMPORARY_TABLES = (BATCH, BATCH_MESSAGES, BATCH_LINKS, OLD_LINKS, NEW_LINKS, BATCH_PERSONS)

# (first-time column, humans_only, counter of the small tables)
MESSAGE_FIRSTS = (
    ("first_open_at", False, "distinct_opens"),
    ("first_human_open_at", True, "distinct_opens"),
    ("first_click_at", False, "distinct_clicks"),
    ("first_human_click_at", True, "distinct_clicks"),
)
MESSAGE_COUNTS = ("opens", "human_opens", "clicks", "human_clicks")
LINK_FIRSTS = (("first_click_at", False), ("first_human_click_at", True))
PERSON_DOMAINS = (("domain", False), ("human_domain", True))


MESSAGE_COLUMNS = (
    "delivery_id, message_id, domain, opens, human_opens, clicks, human_clicks, "
    "first_open_at, first_human_open_at, first_click_at, first_human_click_at"
)
# Per message of the batch: its counts and first times (a counted click implies an open).
MESSAGES_OF_BATCH = (
    "SELECT delivery_id, message_id, MAX(domain) AS domain, "
    "SUM(CASE WHEN type = 'open' THEN 1 ELSE 0 END) AS opens, "
    f"SUM(CASE WHEN type = 'open' AND {HUMAN} THEN 1 ELSE 0 END) AS human_opens, "
    "SUM(is_click) AS clicks, "
    f"SUM(CASE WHEN is_click = 1 AND {HUMAN} THEN 1 ELSE 0 END) AS human_clicks, "
    "MIN(logged_at) AS first_open_at, "
    f"MIN(CASE WHEN {HUMAN} THEN logged_at END) AS first_human_open_at, "
    "MIN(CASE WHEN is_click = 1 THEN logged_at END) AS first_click_at, "
    f"MIN(CASE WHEN is_click = 1 AND {HUMAN} THEN logged_at END) AS first_human_click_at "
    f"FROM {BATCH} WHERE message_id IS NOT NULL AND (type = 'open' OR is_click = 1) GROUP BY delivery_id, message_id"
)
LINK_COLUMNS = "delivery_id, message_id, tracked_url_id, first_click_at, first_human_click_at"
LINKS_OF_BATCH = (
    "SELECT delivery_id, message_id, tracked_url_id, "
    f"MIN(logged_at) AS first_click_at, MIN(CASE WHEN {HUMAN} THEN logged_at END) AS first_human_click_at "
    f"FROM {BATCH} WHERE is_click = 1 AND message_id IS NOT NULL AND tracked_url_id IS NOT NULL "
    "GROUP BY delivery_id, message_id, tracked_url_id"
)
PERSON_COLUMNS = "delivery_id, person_key, domain, human_domain"


def _persons_of_batch() -> str:
    return (
        f"SELECT delivery_id, {PERSON_KEY} AS person_key, MIN({_sql_binary('domain')}) AS domain, "
        f"MIN({_sql_binary(f'CASE WHEN {HUMAN} THEN domain END')}) AS human_domain "
        f"FROM {BATCH} WHERE is_click = 1 AND {PERSON_KEY} IS NOT NULL GROUP BY delivery_id, {PERSON_KEY}"
    )


def _fetch(sql: str, params: list | None = None) -> list[tuple]:
    # Always pass a list: the backends only unescape `%%` when parameters are given.
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall()


def _execute(sql: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def _create_temporary(table: str, select_sql: str, params: list | None = None) -> None:
    _execute(f"CREATE TEMPORARY TABLE {table} AS {select_sql}", params)
    if _is_postgresql():
        # Temporary tables get no statistics by themselves: without them the planner may scan a whole
        # rollup table where a few index lookups per batch row do.
        _execute(f"ANALYZE {table}")


def _sql_smallest(current: str, new: str, *, text: bool = False) -> str:
    """The smaller of two nullable values (NULL: none); text compares by code point, as Python does."""
    less = f"{_sql_binary(new)} < {_sql_binary(current)}" if text else f"{new} < {current}"
    return f"CASE WHEN {current} IS NULL THEN {new} WHEN {new} IS NULL THEN {current} WHEN {less} THEN {new} ELSE {current} END"


def _apply_event_batch(condition: str, params: list, *, rebuilt_delivery_id: int | None = None) -> None:
    """Merges the events matching `condition` (SQL on `e`, the events table) into the rollups.

    Set-based: the batch is read once into a temporary table with each event's recipient domain and
    whether it counts as a click; additive counters are summed per key; per-message, per-link and
    per-person first times are merged with upserts, and the first times that appear or move earlier are
    counted (joining the batch to the rows as they were) to move the distinct counters.

    `rebuilt_delivery_id`: the batch is all the events of that delivery, whose rollups were just deleted;
    its per-entity rows are inserted directly and the distinct counters counted from them.
    """
    if _is_postgresql():
        # Large hash aggregates in memory rather than spilled to disk; this transaction only.
        _execute("SET LOCAL work_mem = '256MB'")
    for table in TEMPORARY_TABLES:
        _execute(f"DROP TABLE IF EXISTS {table}")
    _create_temporary(
        BATCH,
        "SELECT e.delivery_id, e.message_id, e.type, e.logged_at, e.is_machine, e.tracked_url_id, e.user_agent_id, "
        f"e.browser_id, {_sql_domain('m.email')} AS domain, CASE WHEN {IS_CLICK} THEN 1 ELSE 0 END AS is_click "
        "FROM tracking_trackingevent e "
        "JOIN deliveries_delivery d ON d.id = e.delivery_id "
        "LEFT JOIN deliveries_message m ON m.id = e.message_id "
        "LEFT JOIN tracking_trackedurl u ON u.id = e.tracked_url_id "
        f"WHERE ({condition}) AND e.type IN ('open', 'click', 'opt_out', 'mirror')",
        params,
    )
    deltas = _Deltas()
    _count_events(deltas)
    if rebuilt_delivery_id is None:
        _merge_messages(deltas)
        _merge_links(deltas)
        _merge_persons(deltas)
    else:
        _execute(f"INSERT INTO reporting_messagerollup ({MESSAGE_COLUMNS}) {MESSAGES_OF_BATCH}")
        _execute(f"INSERT INTO reporting_messagelinkrollup ({LINK_COLUMNS}) {LINKS_OF_BATCH}")
        _execute(f"INSERT INTO reporting_personrollup ({PERSON_COLUMNS}) {_persons_of_batch()}")
        _count_distinct(rebuilt_delivery_id, deltas)
    deltas.write()
    for table in TEMPORARY_TABLES:
        _execute(f"DROP TABLE IF EXISTS {table}")


def _count_events(deltas: _Deltas) -> None:
    """The additive counters: opens, clicks, opt-outs, mirror views by domain, half hour, agent, link."""
    for delivery_id, is_machine, domain, opens, clicks, opt_outs, mirrors in _fetch(
        "SELECT delivery_id, is_machine, domain, SUM(CASE WHEN type = 'open' THEN 1 ELSE 0 END), SUM(is_click), "
        "SUM(CASE WHEN type = 'opt_out' THEN 1 ELSE 0 END), SUM(CASE WHEN type = 'mirror' THEN 1 ELSE 0 END) "
        f"FROM {BATCH} GROUP BY delivery_id, is_machine, domain"
    ):
        counts = Counter(opens=opens, clicks=clicks, opt_outs=opt_outs, mirror_page_views=mirrors)
        for scope in scopes_of(bool(is_machine)):
            deltas.delivery[(delivery_id, scope)].update(counts)
            deltas.domain[(delivery_id, scope, domain)].update(counts)
    for delivery_id, is_machine, bucket, opens, clicks in _fetch(
        f"SELECT delivery_id, is_machine, {_sql_half_hour('logged_at')} AS bucket, "
        f"SUM(CASE WHEN type = 'open' THEN 1 ELSE 0 END), SUM(is_click) FROM {BATCH} "
        "WHERE type = 'open' OR is_click = 1 GROUP BY delivery_id, is_machine, bucket"
    ):
        for scope in scopes_of(bool(is_machine)):
            deltas.bucket[(delivery_id, scope, _as_datetime(bucket))].update(Counter(opens=opens, clicks=clicks))
    for delivery_id, is_machine, user_agent_id, opens in _fetch(
        f"SELECT delivery_id, is_machine, COALESCE(user_agent_id, 0) AS ua, COUNT(*) FROM {BATCH} "
        "WHERE type = 'open' GROUP BY delivery_id, is_machine, ua"
    ):
        for scope in scopes_of(bool(is_machine)):
            deltas.user_agent[(delivery_id, scope, user_agent_id)]["opens"] += opens
    link_clicks = _fetch(
        f"SELECT delivery_id, is_machine, tracked_url_id, {_sql_day('logged_at')} AS day, COUNT(*) FROM {BATCH} "
        "WHERE tracked_url_id IS NOT NULL AND is_click = 1 GROUP BY delivery_id, is_machine, tracked_url_id, day"
    )
    keys = _link_keys_of({url_id for _d, _m, url_id, _day, _n in link_clicks})
    for delivery_id, is_machine, url_id, day, clicks in link_clicks:
        for scope in scopes_of(bool(is_machine)):
            for kind, key in keys[url_id]:
                deltas.link[(delivery_id, scope, kind, key, _as_date(day))]["clicks"] += clicks


def _merge_messages(deltas: _Deltas) -> None:
    _create_temporary(BATCH_MESSAGES, MESSAGES_OF_BATCH)
    for column, scope, counter in MESSAGE_FIRSTS:
        for delivery_id, domain, old_bucket, new_bucket, recipients in _fetch(
            f"SELECT b.delivery_id, COALESCE(r.domain, b.domain), {_sql_half_hour(f'r.{column}')}, "
            f"{_sql_half_hour(f'b.{column}')}, COUNT(*) FROM {BATCH_MESSAGES} b "
            "LEFT JOIN reporting_messagerollup r ON r.message_id = b.message_id "
            f"WHERE b.{column} IS NOT NULL AND (r.{column} IS NULL OR b.{column} < r.{column}) GROUP BY 1, 2, 3, 4"
        ):
            if old_bucket is None:
                deltas.delivery[(delivery_id, scope)][counter] += recipients
                deltas.domain[(delivery_id, scope, domain)][counter] += recipients
            else:
                deltas.bucket[(delivery_id, scope, _as_datetime(old_bucket))][counter] -= recipients
            deltas.bucket[(delivery_id, scope, _as_datetime(new_bucket))][counter] += recipients
    table = "reporting_messagerollup"
    columns = ("message_id", "delivery_id", "domain", *MESSAGE_COUNTS, *(column for column, _, _ in MESSAGE_FIRSTS))
    updates = [f"{name} = {table}.{name} + excluded.{name}" for name in MESSAGE_COUNTS]
    updates += [f"{c} = {_sql_smallest(f'{table}.{c}', f'excluded.{c}')}" for c, _, _ in MESSAGE_FIRSTS]
    _execute(
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM {BATCH_MESSAGES} WHERE 1 = 1 "
        f"ON CONFLICT (message_id) DO UPDATE SET {', '.join(updates)}"
    )


def _link_keys_of(url_ids: set[int]) -> dict[int, list[tuple[str, str]]]:
    urls = {}
    for chunk in _chunks(url_ids):
        urls.update(
            (pk, rest) for pk, *rest in TrackedUrl.objects.filter(id__in=chunk).values_list("id", "mode", "label", "url", "category")
        )
    return {url_id: _link_keys(url_id, urls.get(url_id)) for url_id in url_ids}


def _link_group_expression(keys: dict[int, list[tuple[str, str]]], kind_index: int) -> tuple[str, list[str]]:
    """SQL giving a URL's key of one link kind (its id, label or category) from `tracked_url_id`."""
    if kind_index == 0:
        return "CAST(tracked_url_id AS VARCHAR(20))", []
    groups: dict[str, list[int]] = defaultdict(list)
    for url_id, url_keys in keys.items():
        groups[url_keys[kind_index][1]].append(url_id)
    if not groups:
        return "''", []
    cases = " ".join(f"WHEN tracked_url_id IN ({', '.join(str(url_id) for url_id in ids)}) THEN %s" for ids in groups.values())
    return f"CASE {cases} ELSE '' END", list(groups)


def _merge_links(deltas: _Deltas) -> None:
    """Merges first clicks per message and URL, then moves the distinct clicks of URLs, labels and
    categories (a label's first click is the earliest over its URLs) and the click-stream pairs of the
    recipients concerned: pairs of the sequence before are removed, pairs of the sequence after added."""
    _create_temporary(BATCH_LINKS, LINKS_OF_BATCH)
    of_batch = f"FROM reporting_messagelinkrollup WHERE message_id IN (SELECT message_id FROM {BATCH_LINKS})"
    _create_temporary(OLD_LINKS, f"SELECT {LINK_COLUMNS} {of_batch}")
    table = "reporting_messagelinkrollup"
    updates = ", ".join(f"{c} = {_sql_smallest(f'{table}.{c}', f'excluded.{c}')}" for c, _ in LINK_FIRSTS)
    _execute(
        f"INSERT INTO {table} ({LINK_COLUMNS}) SELECT {LINK_COLUMNS} FROM {BATCH_LINKS} WHERE 1 = 1 "
        f"ON CONFLICT (message_id, tracked_url_id) DO UPDATE SET {updates}"
    )
    _create_temporary(NEW_LINKS, f"SELECT {LINK_COLUMNS} {of_batch}")
    keys = _link_keys_of({url_id for (url_id,) in _fetch(f"SELECT DISTINCT tracked_url_id FROM {NEW_LINKS}")})
    for column, scope in LINK_FIRSTS:
        for kind_index, kind in enumerate(LinkKind.values):
            group, group_params = _link_group_expression(keys, kind_index)
            firsts = (
                f"SELECT delivery_id, message_id, {group} AS link_key, MIN({column}) AS first_at FROM LINKS "
                f"WHERE {column} IS NOT NULL GROUP BY delivery_id, message_id, link_key"
            )
            for delivery_id, key, old_day, new_day, recipients in _fetch(
                f"SELECT n.delivery_id, n.link_key, {_sql_day('o.first_at')}, {_sql_day('n.first_at')}, COUNT(*) "
                f"FROM ({firsts.replace('LINKS', NEW_LINKS)}) n LEFT JOIN ({firsts.replace('LINKS', OLD_LINKS)}) o "
                "ON o.message_id = n.message_id AND o.link_key = n.link_key "
                "WHERE o.first_at IS NULL OR n.first_at < o.first_at GROUP BY 1, 2, 3, 4",
                group_params + group_params,
            ):
                if old_day is not None:
                    deltas.link[(delivery_id, scope, kind, key, _as_date(old_day))]["distinct_clicks"] -= recipients
                deltas.link[(delivery_id, scope, kind, key, _as_date(new_day))]["distinct_clicks"] += recipients
        for links, sign in ((NEW_LINKS, 1), (OLD_LINKS, -1)):
            for delivery_id, from_url, to_url, recipients in _fetch(
                "SELECT delivery_id, from_url, to_url, COUNT(*) FROM (SELECT delivery_id, tracked_url_id AS from_url, "
                f"LEAD(tracked_url_id) OVER (PARTITION BY message_id ORDER BY {column}, tracked_url_id) AS to_url "
                f"FROM {links} WHERE {column} IS NOT NULL) pairs WHERE to_url IS NOT NULL GROUP BY 1, 2, 3"
            ):
                deltas.stream[(delivery_id, scope, from_url, to_url)]["recipients"] += sign * recipients


def _count_distinct(delivery_id: int, deltas: _Deltas) -> None:
    """The distinct counters of a delivery counted from its per-message, per-link and per-person rows."""
    d = [delivery_id]
    for column, scope, counter in MESSAGE_FIRSTS:
        for domain, bucket, recipients in _fetch(
            f"SELECT domain, {_sql_half_hour(column)} AS bucket, COUNT(*) FROM reporting_messagerollup "
            f"WHERE delivery_id = %s AND {column} IS NOT NULL GROUP BY domain, bucket",
            d,
        ):
            deltas.delivery[(delivery_id, scope)][counter] += recipients
            deltas.domain[(delivery_id, scope, domain)][counter] += recipients
            deltas.bucket[(delivery_id, scope, _as_datetime(bucket))][counter] += recipients
    keys = _link_keys_of(
        {url_id for (url_id,) in _fetch("SELECT DISTINCT tracked_url_id FROM reporting_messagelinkrollup WHERE delivery_id = %s", d)}
    )
    for column, scope in LINK_FIRSTS:
        for kind_index, kind in enumerate(LinkKind.values):
            group, group_params = _link_group_expression(keys, kind_index)
            for key, day, recipients in _fetch(
                f"SELECT link_key, {_sql_day('first_at')} AS day, COUNT(*) FROM (SELECT message_id, {group} AS link_key, "
                f"MIN({column}) AS first_at FROM reporting_messagelinkrollup WHERE delivery_id = %s AND {column} IS NOT NULL "
                "GROUP BY message_id, link_key) firsts GROUP BY link_key, day",
                [*group_params, delivery_id],
            ):
                deltas.link[(delivery_id, scope, kind, key, _as_date(day))]["distinct_clicks"] += recipients
        for from_url, to_url, recipients in _fetch(
            "SELECT from_url, to_url, COUNT(*) FROM (SELECT tracked_url_id AS from_url, LEAD(tracked_url_id) OVER "
            f"(PARTITION BY message_id ORDER BY {column}, tracked_url_id) AS to_url FROM reporting_messagelinkrollup "
            f"WHERE delivery_id = %s AND {column} IS NOT NULL) pairs WHERE to_url IS NOT NULL GROUP BY from_url, to_url",
            d,
        ):
            deltas.stream[(delivery_id, scope, from_url, to_url)]["recipients"] += recipients
    for column, scope in PERSON_DOMAINS:
        for domain, persons in _fetch(
            f"SELECT {column}, COUNT(*) FROM reporting_personrollup WHERE delivery_id = %s AND {column} IS NOT NULL "
            f"GROUP BY {column}",
            d,
        ):
            deltas.delivery[(delivery_id, scope)]["persons"] += persons
            deltas.domain[(delivery_id, scope, domain)]["persons"] += persons


def _merge_persons(deltas: _Deltas) -> None:
    """Persons who clicked; each counts in its smallest recipient domain (moving there if smaller)."""
    _create_temporary(BATCH_PERSONS, _persons_of_batch())
    for column, scope in PERSON_DOMAINS:
        for delivery_id, old, new, persons in _fetch(
            f"SELECT b.delivery_id, r.{column}, b.{column}, COUNT(*) FROM {BATCH_PERSONS} b "
            "LEFT JOIN reporting_personrollup r ON r.delivery_id = b.delivery_id AND r.person_key = b.person_key "
            f"WHERE b.{column} IS NOT NULL AND (r.{column} IS NULL OR {_sql_binary(f'b.{column}')} < {_sql_binary(f'r.{column}')}) "
            "GROUP BY 1, 2, 3"
        ):
            if old is None:
                deltas.delivery[(delivery_id, scope)]["persons"] += persons
            else:
                deltas.domain[(delivery_id, scope, old)]["persons"] -= persons
            deltas.domain[(delivery_id, scope, new)]["persons"] += persons
    table = "reporting_personrollup"
    updates = ", ".join(f"{c} = {_sql_smallest(f'{table}.{c}', f'excluded.{c}')}" for c, _ in PERSON_DOMAINS)
    _execute(
        f"INSERT INTO {table} (delivery_id, person_key, domain, human_domain) "
        f"SELECT delivery_id, person_key, domain, human_domain FROM {BATCH_PERSONS} WHERE 1 = 1 "
        f"ON CONFLICT (delivery_id, person_key) DO UPDATE SET {updates}"
    )



def delivery_recompute(*, delivery_id: int) -> Delivery:
    """"Recompute delivery and tracking indicators": rebuilds the delivery's rollups from its raw events
    and its counters and statistics from its messages, in one transaction. Events not yet consolidated
    are consolidated first; the rebuild takes exactly the consolidated ones, so none counts twice.

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
    with _consolidation_lock(wait=True) as state:
        delivery = Delivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None:
            raise NotFound("No such delivery.")
        # What has been committed so far is consolidated first, so the rebuild is up to date.
        for _ in range(MAX_BATCHES_PER_RUN):
            if not _consolidate_batch(state, BATCH_SIZE)[1]:
                break
        for model in EVENT_ROLLUPS:
            model.objects.filter(delivery_id=delivery_id).delete()
        # Exactly the events consolidation has merged: any past the pointer or in its gaps (committed just
        # now, or beyond the batches above) are the next run's, and merging them here too would count them twice.
        _apply_event_batch(
            "e.delivery_id = %s AND e.id <= %s AND NOT EXISTS (SELECT 1 FROM reporting_consolidationgap g "
            "WHERE e.id BETWEEN g.first_id AND g.last_id)",
            [delivery_id, state.pointer],
            rebuilt_delivery_id=delivery_id,
        )
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
