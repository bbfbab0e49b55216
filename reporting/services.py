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
from django.db.models import Count, F, Q
from django.db.models.functions import Coalesce, TruncHour
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from beacon.exceptions import NotFound, TransitionNotAllowed
from deliveries.models import Delivery, DeliveryStatus, FailureType, Message, MessageStatus, TrackedUrl
from profiles.emails import email_domain_expression, email_domain_sql
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
from tracking.models import TrackingEvent

STATE_NAME = "events"
BATCH_SIZE = 100_000
MAX_BATCHES_PER_RUN = 50
# Ingestion transactions last milliseconds; an id missing for this long was rolled back.
GAP_TIME_TO_LIVE = dt.timedelta(minutes=30)
PURGE_BATCH_SIZE = 10_000
PURGE_MAX_BATCHES = 100
HALF_HOUR_SECONDS = 1800
KEY_LENGTH = 300
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
    _analyze(BATCH_IDS)
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


# --- The set-based merge (SQL portable between PostgreSQL and SQLite) ----------------------------

def _is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def _sql_half_hour(column: str) -> str:
    if _is_postgresql():
        # date_bin computes on the timestamp's microseconds; epoch arithmetic would go through numeric (slow).
        return f"date_bin('{HALF_HOUR_SECONDS} seconds', {column}, TIMESTAMPTZ '1970-01-01 00:00:00+00')"
    return f"datetime(CAST(strftime('%%s', {column}) AS INTEGER) / {HALF_HOUR_SECONDS} * {HALF_HOUR_SECONDS}, 'unixepoch')"


def _sql_day(column: str) -> str:
    if _is_postgresql():
        return f"CAST(({column} AT TIME ZONE 'UTC') AS date)"
    return f"date({column})"


def _sql_binary(expression: str) -> str:
    """Compare as Python does (by code point), whatever the database collation."""
    return f'({expression}) COLLATE "C"' if _is_postgresql() else expression


def _sql_person_key(alias: str) -> str:
    return f"COALESCE(NULLIF({alias}.browser_id, ''), 'm' || CAST({alias}.message_id AS VARCHAR(20)))"


def _as_datetime(value) -> dt.datetime:
    if isinstance(value, str):
        value = parse_datetime(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, dt.UTC)


def _as_date(value) -> dt.date:
    return parse_date(value) if isinstance(value, str) else value


# What an event counts as (`kind`): an open, a click (not on the opt-out or mirror link), an opt-out, a view of
# the mirror page; 0: a click counted as none of these.
OPEN, CLICK, OPT_OUT, MIRROR = 1, 2, 3, 4
HUMAN = "NOT is_machine"
# Relations of one merge, temporary, dropped at its end.
BATCH_IDS = "reporting_batch_ids"
BATCH = "reporting_batch_events"
BATCH_MESSAGES = "reporting_batch_messages"
BATCH_LINKS = "reporting_batch_links"
OLD_LINKS = "reporting_old_links"
NEW_LINKS = "reporting_new_links"
LINK_KEYS = "reporting_link_keys"
BATCH_PERSONS = "reporting_batch_persons"
TEMPORARY_TABLES = (BATCH, BATCH_MESSAGES, BATCH_LINKS, OLD_LINKS, NEW_LINKS, LINK_KEYS, BATCH_PERSONS)

# (counter of the small tables, the events it counts)
COUNTED = (
    ("opens", f"kind = {OPEN}"),
    ("clicks", f"kind = {CLICK}"),
    ("opt_outs", f"kind = {OPT_OUT}"),
    ("mirror_page_views", f"kind = {MIRROR}"),
)
# (first-time column, humans_only, counter of the small tables)
MESSAGE_FIRSTS = (
    ("first_open_at", False, "distinct_opens"),
    ("first_human_open_at", True, "distinct_opens"),
    ("first_click_at", False, "distinct_clicks"),
    ("first_human_click_at", True, "distinct_clicks"),
)
MESSAGE_COLUMNS = ("message_id", "delivery_id", "domain", *(column for column, _, _ in MESSAGE_FIRSTS))
LINK_FIRSTS = (("first_click_at", False), ("first_human_click_at", True))
LINK_COLUMNS = "delivery_id, message_id, tracked_url_id, first_click_at, first_human_click_at"
PERSON_DOMAINS = (("domain", False), ("human_domain", True))


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


def _analyze(table: str) -> None:
    """Statistics for a temporary table that a later statement joins or aggregates: PostgreSQL gathers none by
    itself, and guesses sort-and-merge plans several times slower than the hash ones the sizes call for."""
    if _is_postgresql():
        _execute(f"ANALYZE {table}")


def _drop_temporary() -> None:
    for table in TEMPORARY_TABLES:
        _execute(f"DROP TABLE IF EXISTS {table}")


def _sql_smallest(current: str, new: str, *, text: bool = False) -> str:
    """The smaller of two nullable values (NULL: none); text compares by code point, as Python does."""
    less = f"{_sql_binary(new)} < {_sql_binary(current)}" if text else f"{new} < {current}"
    return f"CASE WHEN {current} IS NULL THEN {new} WHEN {new} IS NULL THEN {current} WHEN {less} THEN {new} ELSE {current} END"


def _sql_moved(column: str, *, rebuilt: bool, text: bool = False) -> str:
    """Whether `column` (a first time, or a smallest domain) is set and appeared or moved earlier than `old_column`,
    its value before the merge; in a rebuild there was none."""
    if rebuilt:
        return f"{column} IS NOT NULL"
    less = f"{_sql_binary(column)} < {_sql_binary(f'old_{column}')}" if text else f"{column} < old_{column}"
    return f"{column} IS NOT NULL AND (old_{column} IS NULL OR {less})"


def _sql_events(condition: str) -> str:
    """The events matching `condition` (SQL on `e`, the events table) that rollups count, with their `kind`;
    events of deleted deliveries are left out."""
    return (
        "SELECT e.delivery_id, e.message_id, e.logged_at, e.is_machine, e.tracked_url_id, e.user_agent_id, e.browser_id, "
        f"CASE WHEN e.type = 'open' THEN {OPEN} "
        f"WHEN e.type = 'click' AND (u.mode IS NULL OR u.mode NOT IN ('opt_out', 'mirror')) THEN {CLICK} "
        f"WHEN e.type = 'opt_out' THEN {OPT_OUT} WHEN e.type = 'mirror' THEN {MIRROR} ELSE 0 END AS kind "
        "FROM tracking_trackingevent e JOIN deliveries_delivery d ON d.id = e.delivery_id "
        "LEFT JOIN tracking_trackedurl u ON u.id = e.tracked_url_id "
        f"WHERE ({condition}) AND e.type IN ('open', 'click', 'opt_out', 'mirror')"
    )


def _sql_join_rows(table: str, alias: str, match: str, *, left: bool) -> str:
    """A join of the rows of rollup `table` that `match` (their primary key, from the batch), each found through
    the key's index, so that the cost follows the batch and not the table: PostgreSQL would rather hash a scan
    of the whole table once the batch is a few percent of it, which a lateral subquery it cannot flatten
    (OFFSET 0) rules out."""
    join = "LEFT JOIN" if left else "JOIN"
    if _is_postgresql():
        return f"{join} LATERAL (SELECT * FROM {table} {alias} WHERE {match} OFFSET 0) {alias} ON TRUE"
    return f"{join} {table} {alias} ON {match}"


def _write_rows(
    table: str, columns: str, select_sql: str, key: str, order: str, updates: list[str], *, rebuilt: bool
) -> None:
    """Inserts the rows of `select_sql` into per-entity rollup `table`, merging them with the rows already there
    (by primary `key`) unless the delivery is `rebuilt`.

    The rows go in `order`, the key's order within a delivery: the index then grows at its end. It leads with
    the message or person, not the delivery, which is the same for most rows of a batch: sorting on a column
    whose values differ is several times faster.
    """
    insert = f"INSERT INTO {table} ({columns}) {select_sql} ORDER BY {order}"
    if not rebuilt:
        insert += f" ON CONFLICT ({key}) DO UPDATE SET {', '.join(updates)}"
    _execute(insert)


def _apply_event_batch(condition: str, params: list, *, rebuilt: bool = False) -> None:
    """Merges the events matching `condition` (SQL on `e`, the events table) into the rollups.

    Set-based: the events are read once into a temporary table, with what each counts as; additive counters
    are summed per key; per-message, per-link and per-person first times (and smallest domains) are aggregated
    into temporary tables beside their values before the merge (their rows looked up by key); those that
    appear or move earlier move the distinct counters, and only their rows are written.

    `rebuilt`: the events are all the events of deliveries whose rollups were just deleted; there is nothing to
    merge with, so rows are inserted directly.
    """
    if _is_postgresql():
        # Large hash aggregates in memory rather than spilled to disk; this transaction only.
        _execute("SET LOCAL work_mem = '256MB'")
        # The statements of a bounded batch run in tens of milliseconds; the lookups by key make their
        # estimated costs high enough for PostgreSQL to compile them first, which takes longer (~0.3 s each).
        # A rebuild's aggregates over millions of rows gain from it (batches before it in the same transaction
        # turned it off).
        _execute("RESET jit" if rebuilt else "SET LOCAL jit = off")
    _drop_temporary()
    _create_temporary(BATCH, _sql_events(condition), params)
    if rebuilt:
        # Millions of rows: the statistics let the planner size the aggregates over them.
        _analyze(BATCH)
    deltas = _Deltas()
    _count_events(deltas)
    _merge_messages(deltas, rebuilt=rebuilt)
    _merge_links(deltas, rebuilt=rebuilt)
    _merge_persons(deltas, rebuilt=rebuilt)
    deltas.write()
    _drop_temporary()


def _count_events(deltas: _Deltas) -> None:
    """Opens and clicks per half hour, opens per user agent, clicks per link and day."""
    for delivery_id, is_machine, bucket, opens, clicks in _fetch(
        f"SELECT delivery_id, is_machine, {_sql_half_hour('logged_at')} AS bucket, "
        f"COUNT(*) FILTER (WHERE kind = {OPEN}), COUNT(*) FILTER (WHERE kind = {CLICK}) FROM {BATCH} "
        f"WHERE kind IN ({OPEN}, {CLICK}) GROUP BY delivery_id, is_machine, bucket"
    ):
        for scope in scopes_of(bool(is_machine)):
            deltas.bucket[(delivery_id, scope, _as_datetime(bucket))].update(Counter(opens=opens, clicks=clicks))
    for delivery_id, is_machine, user_agent_id, opens in _fetch(
        f"SELECT delivery_id, is_machine, COALESCE(user_agent_id, 0) AS ua, COUNT(*) FROM {BATCH} "
        f"WHERE kind = {OPEN} GROUP BY delivery_id, is_machine, ua"
    ):
        for scope in scopes_of(bool(is_machine)):
            deltas.user_agent[(delivery_id, scope, user_agent_id)]["opens"] += opens
    link_clicks = _fetch(
        f"SELECT delivery_id, is_machine, tracked_url_id, {_sql_day('logged_at')} AS day, COUNT(*) FROM {BATCH} "
        f"WHERE tracked_url_id IS NOT NULL AND kind = {CLICK} GROUP BY delivery_id, is_machine, tracked_url_id, day"
    )
    keys = _link_keys_of({url_id for _d, _m, url_id, _day, _n in link_clicks})
    for delivery_id, is_machine, url_id, day, clicks in link_clicks:
        for scope in scopes_of(bool(is_machine)):
            for kind, key in keys[url_id]:
                deltas.link[(delivery_id, scope, kind, key, _as_date(day))]["clicks"] += clicks


def _merge_messages(deltas: _Deltas, *, rebuilt: bool) -> None:
    """Additive counters per domain; per-message rows, whose first times move the distinct opens and clicks.

    BATCH_MESSAGES has, per message of the batch (and per delivery, its events without one), the counted
    events in both scopes, the first times (a counted click implies an open), the recipient's domain and the
    first times of the message's row before the merge (`old_...`).
    """
    table = "reporting_messagerollup"
    firsts = [column for column, _, _ in MESSAGE_FIRSTS]
    opened = f"kind IN ({OPEN}, {CLICK})"
    counts = ", ".join(
        f"COUNT(*) FILTER (WHERE {condition}) AS {name}, COUNT(*) FILTER (WHERE {condition} AND {HUMAN}) AS human_{name}"
        for name, condition in COUNTED
    )
    batch = (
        f"SELECT delivery_id, message_id, {counts}, "
        f"MIN(logged_at) FILTER (WHERE {opened}) AS first_open_at, "
        f"MIN(logged_at) FILTER (WHERE {opened} AND {HUMAN}) AS first_human_open_at, "
        f"MIN(logged_at) FILTER (WHERE kind = {CLICK}) AS first_click_at, "
        f"MIN(logged_at) FILTER (WHERE kind = {CLICK} AND {HUMAN}) AS first_human_click_at "
        f"FROM {BATCH} GROUP BY delivery_id, message_id"
    )
    if rebuilt:
        _create_temporary(
            BATCH_MESSAGES,
            f"SELECT b.*, {email_domain_sql('m.email')} AS domain FROM ({batch}) b "
            "LEFT JOIN deliveries_message m ON m.id = b.message_id",
        )
        # Large: the statistics let the planner hash the persons' join to it rather than sort both sides.
        _analyze(BATCH_MESSAGES)
    else:
        # A message with a row has its domain there; only a new one is looked up (a subquery: by primary key).
        email_domain = f"(SELECT {email_domain_sql('m.email')} FROM deliveries_message m WHERE m.id = b.message_id)"
        match = "r.delivery_id = b.delivery_id AND r.message_id = b.message_id"
        _create_temporary(
            BATCH_MESSAGES,
            f"SELECT b.*, COALESCE(r.domain, {email_domain}, '') AS domain, "
            + ", ".join(f"r.{column} AS old_{column}" for column in firsts)
            # In key order, the lookups read the rollup's pages in order.
            + f" FROM ({batch} ORDER BY message_id, delivery_id) b {_sql_join_rows(table, 'r', match, left=True)}",
        )
    sums = ", ".join(f"SUM({name}), SUM(human_{name})" for name, _ in COUNTED)
    for delivery_id, domain, *counts in _fetch(
        f"SELECT delivery_id, domain, {sums} FROM {BATCH_MESSAGES} GROUP BY delivery_id, domain"
    ):
        for (name, _), all_count, human_count in zip(COUNTED, counts[::2], counts[1::2]):
            for scope, count in ((False, int(all_count)), (True, int(human_count))):
                deltas.delivery[(delivery_id, scope)][name] += count
                deltas.domain[(delivery_id, scope, domain)][name] += count
    for column, scope, counter in MESSAGE_FIRSTS:
        before = "NULL" if rebuilt else _sql_half_hour(f"old_{column}")
        for delivery_id, domain, old_bucket, new_bucket, recipients in _fetch(
            f"SELECT delivery_id, domain, {before}, {_sql_half_hour(column)}, COUNT(*) FROM {BATCH_MESSAGES} "
            f"WHERE message_id IS NOT NULL AND {_sql_moved(column, rebuilt=rebuilt)} GROUP BY 1, 2, 3, 4"
        ):
            if old_bucket is None:
                deltas.delivery[(delivery_id, scope)][counter] += recipients
                deltas.domain[(delivery_id, scope, domain)][counter] += recipients
            else:
                deltas.bucket[(delivery_id, scope, _as_datetime(old_bucket))][counter] -= recipients
            deltas.bucket[(delivery_id, scope, _as_datetime(new_bucket))][counter] += recipients
    columns = ", ".join(MESSAGE_COLUMNS)
    # A message opened or clicked has a row (so a row always has `first_open_at`); only a new one, or one whose
    # first times move, is written.
    changed = " OR ".join(f"({_sql_moved(column, rebuilt=rebuilt)})" for column in firsts)
    _write_rows(
        table, columns,
        f"SELECT {columns} FROM {BATCH_MESSAGES} WHERE message_id IS NOT NULL AND first_open_at IS NOT NULL "
        f"AND ({changed})",
        "delivery_id, message_id", "message_id, delivery_id",
        [f"{column} = {_sql_smallest(f'{table}.{column}', f'excluded.{column}')}" for column in firsts],
        rebuilt=rebuilt,
    )


def _link_keys_of(url_ids: set[int]) -> dict[int, list[tuple[str, str]]]:
    urls = {}
    for chunk in _chunks(url_ids):
        urls.update(
            (pk, rest) for pk, *rest in TrackedUrl.objects.filter(id__in=chunk).values_list("id", "mode", "label", "url", "category")
        )
    return {url_id: _link_keys(url_id, urls.get(url_id)) for url_id in url_ids}


def _fill_link_keys(links: str) -> list[tuple[str, str]]:
    """Fills LINK_KEYS with the key of each kind (URL, label, category) of each URL of `links`, by number, and
    whether other URLs share it; returns the (kind, key) of each number."""
    keys = _link_keys_of({url_id for (url_id,) in _fetch(f"SELECT DISTINCT tracked_url_id FROM {links}")})
    numbers: dict[tuple[str, str], int] = {}
    pairs = [(url_id, numbers.setdefault(key, len(numbers))) for url_id, url_keys in keys.items() for key in url_keys]
    urls_of_key = Counter(number for _, number in pairs)
    _execute(
        f"CREATE TEMPORARY TABLE {LINK_KEYS} (tracked_url_id BIGINT NOT NULL, key_id INTEGER NOT NULL, shared INTEGER NOT NULL)"
    )
    for chunk in _chunks(pairs, 500):
        _execute(
            f"INSERT INTO {LINK_KEYS} (tracked_url_id, key_id, shared) VALUES {', '.join(['(%s, %s, %s)'] * len(chunk))}",
            [value for url_id, number in chunk for value in (url_id, number, int(urls_of_key[number] > 1))],
        )
    return list(numbers)


def _count_distinct_link_clicks(links: str, deltas: _Deltas, *, rebuilt: bool) -> None:
    """Moves the distinct clicks of each link key (URL, label, category) whose first click per recipient
    appeared or moved earlier, in both scopes: `links` has the rows of the messages concerned, with their first
    clicks before the merge (`old_...`) unless the delivery is `rebuilt`."""
    keys = _fill_link_keys(links)
    firsts = [column for column, _ in LINK_FIRSTS]
    olds = [] if rebuilt else [f"old_{column}" for column in firsts]
    # Per message and key: a key of one URL (always so for URLs) has its first clicks in that URL's row; a label
    # or category over several URLs, the earliest of its URLs'.
    per_key = (
        f"SELECT l.delivery_id, k.key_id, {', '.join(f'l.{column}' for column in firsts + olds)} "
        f"FROM {links} l JOIN {LINK_KEYS} k ON k.tracked_url_id = l.tracked_url_id AND k.shared = 0 UNION ALL "
        f"SELECT l.delivery_id, k.key_id, {', '.join(f'MIN(l.{column})' for column in firsts + olds)} "
        f"FROM {links} l JOIN {LINK_KEYS} k ON k.tracked_url_id = l.tracked_url_id AND k.shared = 1 "
        "GROUP BY l.delivery_id, l.message_id, k.key_id"
    )
    moves = []
    for column in firsts:
        moved = _sql_moved(column, rebuilt=rebuilt)
        old = "NULL" if rebuilt else f"old_{column}"
        moves.append((f"CASE WHEN {moved} THEN 1 ELSE 0 END", _sql_day(old), _sql_day(column), moved))
    for delivery_id, key_id, *days, recipients in _fetch(
        f"SELECT delivery_id, key_id, {', '.join(', '.join(move[:3]) for move in moves)}, COUNT(*) FROM ({per_key}) firsts "
        f"WHERE {' OR '.join(f'({move[3]})' for move in moves)} GROUP BY {', '.join(str(n) for n in range(1, 9))}"
    ):
        kind, key = keys[key_id]
        for (_, scope), (moved, old_day, new_day) in zip(LINK_FIRSTS, (days[:3], days[3:])):
            if not moved:
                continue
            if old_day is not None:
                deltas.link[(delivery_id, scope, kind, key, _as_date(old_day))]["distinct_clicks"] -= recipients
            deltas.link[(delivery_id, scope, kind, key, _as_date(new_day))]["distinct_clicks"] += recipients


def _merge_links(deltas: _Deltas, *, rebuilt: bool) -> None:
    """Merges first clicks per message and URL, then moves the distinct clicks of URLs, labels and categories
    (a label's first click is the earliest over its URLs) and the click-stream pairs of the recipients
    concerned: pairs of the sequence before are removed, pairs of the sequence after added."""
    _create_temporary(
        BATCH_LINKS,
        f"SELECT delivery_id, message_id, tracked_url_id, MIN(logged_at) AS first_click_at, "
        f"MIN(logged_at) FILTER (WHERE {HUMAN}) AS first_human_click_at FROM {BATCH} "
        f"WHERE kind = {CLICK} AND message_id IS NOT NULL AND tracked_url_id IS NOT NULL "
        "GROUP BY delivery_id, message_id, tracked_url_id",
    )
    table = "reporting_messagelinkrollup"
    firsts = [column for column, _ in LINK_FIRSTS]
    if rebuilt:
        links = BATCH_LINKS
    else:
        # Every link row of the messages concerned (labels, categories and sequences span their URLs), with
        # the first clicks after the merge and before (old_...).
        _create_temporary(
            OLD_LINKS,
            f"SELECT {', '.join(f'r.{column}' for column in LINK_COLUMNS.split(', '))} "
            f"FROM (SELECT DISTINCT delivery_id, message_id FROM {BATCH_LINKS} ORDER BY message_id, delivery_id) b "
            f"{_sql_join_rows(table, 'r', 'r.delivery_id = b.delivery_id AND r.message_id = b.message_id', left=False)}",
        )
        _create_temporary(
            NEW_LINKS,
            "SELECT delivery_id, message_id, tracked_url_id, "
            + ", ".join(f"MIN({column}) AS {column}, MIN(old_{column}) AS old_{column}" for column in firsts)
            + f" FROM (SELECT {LINK_COLUMNS}, {', '.join(f'{column} AS old_{column}' for column in firsts)} FROM {OLD_LINKS} "
            f"UNION ALL SELECT {LINK_COLUMNS}, NULL, NULL FROM {BATCH_LINKS}) links "
            # In the click sequences' order, which the windows below then sort cheaply.
            "GROUP BY delivery_id, message_id, tracked_url_id ORDER BY message_id, first_click_at, tracked_url_id",
        )
        links = NEW_LINKS
    # The rows whose first clicks appear or move (links has them merged, with those before).
    changed = " OR ".join(f"({_sql_moved(column, rebuilt=rebuilt)})" for column in firsts)
    _write_rows(
        table, LINK_COLUMNS, f"SELECT {LINK_COLUMNS} FROM {links} WHERE {changed}",
        "delivery_id, message_id, tracked_url_id", "message_id, tracked_url_id, delivery_id",
        [f"{column} = {_sql_smallest(f'{table}.{column}', f'excluded.{column}')}" for column in firsts],
        rebuilt=rebuilt,
    )
    _count_distinct_link_clicks(links, deltas, rebuilt=rebuilt)
    for column, scope in LINK_FIRSTS:
        for first, sign in ((column, 1),) if rebuilt else ((column, 1), (f"old_{column}", -1)):
            for delivery_id, from_url, to_url, recipients in _fetch(
                "SELECT delivery_id, from_url, to_url, COUNT(*) FROM (SELECT delivery_id, tracked_url_id AS from_url, "
                f"LEAD(tracked_url_id) OVER (PARTITION BY message_id ORDER BY {first}, tracked_url_id) AS to_url "
                f"FROM {links} WHERE {first} IS NOT NULL) pairs WHERE to_url IS NOT NULL GROUP BY 1, 2, 3"
            ):
                deltas.stream[(delivery_id, scope, from_url, to_url)]["recipients"] += sign * recipients


def _merge_persons(deltas: _Deltas, *, rebuilt: bool) -> None:
    """Persons who clicked; each counts in its smallest recipient domain (moving there if smaller)."""
    table = "reporting_personrollup"
    domain = "COALESCE(m.domain, '')"
    person_key = _sql_person_key("e")
    batch = (
        f"SELECT e.delivery_id, {person_key} AS person_key, MIN({_sql_binary(domain)}) AS domain, "
        f"MIN({_sql_binary(f'CASE WHEN NOT e.is_machine THEN {domain} END')}) AS human_domain FROM {BATCH} e "
        f"LEFT JOIN {BATCH_MESSAGES} m ON m.delivery_id = e.delivery_id AND m.message_id = e.message_id "
        f"WHERE e.kind = {CLICK} AND {person_key} IS NOT NULL GROUP BY e.delivery_id, {person_key}"
    )
    if rebuilt:
        _create_temporary(BATCH_PERSONS, batch)
    else:
        match = "r.delivery_id = b.delivery_id AND r.person_key = b.person_key"
        _create_temporary(
            BATCH_PERSONS,
            f"SELECT b.*, r.domain AS old_domain, r.human_domain AS old_human_domain FROM ({batch} "
            f"ORDER BY {_sql_binary(person_key)}, e.delivery_id) b {_sql_join_rows(table, 'r', match, left=True)}",
        )
    for column, scope in PERSON_DOMAINS:
        before = "NULL" if rebuilt else f"old_{column}"
        for delivery_id, old, new, persons in _fetch(
            f"SELECT delivery_id, {before}, {column}, COUNT(*) FROM {BATCH_PERSONS} "
            f"WHERE {_sql_moved(column, rebuilt=rebuilt, text=True)} GROUP BY 1, 2, 3"
        ):
            if old is None:
                deltas.delivery[(delivery_id, scope)]["persons"] += persons
            else:
                deltas.domain[(delivery_id, scope, old)]["persons"] -= persons
            deltas.domain[(delivery_id, scope, new)]["persons"] += persons
    # Only new persons, or those whose smallest domain moves, are written.
    changed = " OR ".join(f"({_sql_moved(column, rebuilt=rebuilt, text=True)})" for column, _ in PERSON_DOMAINS)
    _write_rows(
        table, "delivery_id, person_key, domain, human_domain",
        f"SELECT delivery_id, person_key, domain, human_domain FROM {BATCH_PERSONS} WHERE {changed}",
        "delivery_id, person_key", f"{_sql_binary('person_key')}, delivery_id",
        [f"{column} = {_sql_smallest(f'{table}.{column}', f'excluded.{column}', text=True)}" for column, _ in PERSON_DOMAINS],
        rebuilt=rebuilt,
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
        # Those in gaps are few, so they are listed rather than every event checked against every gap.
        in_gaps = _fetch(
            "SELECT e.id FROM reporting_consolidationgap g JOIN tracking_trackingevent e "
            "ON e.id BETWEEN g.first_id AND g.last_id WHERE e.delivery_id = %s",
            [delivery_id],
        )
        condition = "e.delivery_id = %s AND e.id <= %s"
        if in_gaps:
            condition += f" AND e.id NOT IN ({', '.join(str(int(pk)) for (pk,) in in_gaps)})"
        _apply_event_batch(condition, [delivery_id, state.pointer], rebuilt=True)
        _refresh_delivery_counters(delivery)
        delivery_message_stats_refresh(delivery_id=delivery_id)
    return delivery


# --- Statistics from the delivery log ------------------------------------------------------------

def _messages_with_domain(delivery_id: int) -> models.QuerySet:
    """The delivery's messages annotated with `domain`, as `email_domain` computes it."""
    return (
        Message.objects.filter(delivery_id=delivery_id)
        .annotate(domain=email_domain_expression("email"))
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
