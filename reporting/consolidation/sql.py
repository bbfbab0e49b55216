"""The SQL kit of consolidation: names from the models, statements, and what differs between PostgreSQL and
SQLite. Every dialect branch of consolidation lives here, as Django keeps its own in `connection.ops`, so the
merge modules read as one portable SQL.
"""
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator

from django.db import OperationalError, connection, models
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

HALF_HOUR_SECONDS = 1800
UPSERT_ROWS = 500


class Table:
    """A model's table for SQL: `str(Table(Message))` is its table, `Table(Message).email` a column (by field
    name or attribute name, `delivery` or `delivery_id`), both from the model's `_meta`."""

    def __init__(self, model: type[models.Model]) -> None:
        self._meta = model._meta

    def __str__(self) -> str:
        return self._meta.db_table

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._meta.get_field(name).column


def literal(value: str) -> str:
    """A string constant (an event type, a tracking mode) as an SQL literal."""
    return "'" + str(value).replace("'", "''") + "'"


def _is_postgresql() -> bool:
    return connection.vendor == "postgresql"


# --- Statements ----------------------------------------------------------------------------------

def fetch(sql: str, params: list | None = None) -> list[tuple]:
    # Always pass a list: the backends only unescape `%%` when parameters are given.
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall()


def execute(sql: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def create_temporary(table: str, select_sql: str, params: list | None = None) -> None:
    execute(f"CREATE TEMPORARY TABLE {table} AS {select_sql}", params)


def drop_temporary(tables: Iterable[str]) -> None:
    for table in tables:
        execute(f"DROP TABLE IF EXISTS {table}")


def chunks(values: Iterable, size: int = 2000) -> Iterator[list]:
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _adapt(model_field: models.Field, value: object) -> object:
    if isinstance(model_field, models.DateTimeField):
        return connection.ops.adapt_datetimefield_value(value)
    if isinstance(model_field, models.DateField):
        return connection.ops.adapt_datefield_value(value)
    return value


def add_counts(model: type[models.Model], key_fields: tuple[str, ...], deltas: dict[tuple, Counter]) -> None:
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
        for start in range(0, len(items), UPSERT_ROWS):
            chunk = items[start:start + UPSERT_ROWS]
            params = []
            for key, counts in chunk:
                values = (*key, *(counts.get(name, 0) for name in count_fields))
                params.extend(_adapt(f, v) for f, v in zip(fields, values))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([row_sql] * len(chunk))} "
                f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}",
                params,
            )


def write_rows(
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
    execute(insert)


# --- Expressions ---------------------------------------------------------------------------------

def half_hour(column: str) -> str:
    if _is_postgresql():
        # date_bin computes on the timestamp's microseconds; epoch arithmetic would go through numeric (slow).
        return f"date_bin('{HALF_HOUR_SECONDS} seconds', {column}, TIMESTAMPTZ '1970-01-01 00:00:00+00')"
    return f"datetime(CAST(strftime('%%s', {column}) AS INTEGER) / {HALF_HOUR_SECONDS} * {HALF_HOUR_SECONDS}, 'unixepoch')"


def day(column: str) -> str:
    if _is_postgresql():
        return f"CAST(({column} AT TIME ZONE 'UTC') AS date)"
    return f"date({column})"


def binary(expression: str) -> str:
    """Compare as Python does (by code point), whatever the database collation."""
    return f'({expression}) COLLATE "C"' if _is_postgresql() else expression


def smallest(current: str, new: str, *, text: bool = False) -> str:
    """The smaller of two nullable values (NULL: none); text compares by code point, as Python does."""
    less = f"{binary(new)} < {binary(current)}" if text else f"{new} < {current}"
    return f"CASE WHEN {current} IS NULL THEN {new} WHEN {new} IS NULL THEN {current} WHEN {less} THEN {new} ELSE {current} END"


def moved(column: str, *, rebuilt: bool, text: bool = False) -> str:
    """Whether `column` (a first time, or a smallest domain) is set and appeared or moved earlier than `old_column`,
    its value before the merge; in a rebuild there was none."""
    if rebuilt:
        return f"{column} IS NOT NULL"
    less = f"{binary(column)} < {binary(f'old_{column}')}" if text else f"{column} < old_{column}"
    return f"{column} IS NOT NULL AND (old_{column} IS NULL OR {less})"


def join_rows(table: str, alias: str, match: str, *, left: bool) -> str:
    """A join of the rows of rollup `table` that `match` (their primary key, from the batch), each found through
    the key's index, so that the cost follows the batch and not the table: PostgreSQL would rather hash a scan
    of the whole table once the batch is a few percent of it, which a lateral subquery it cannot flatten
    (OFFSET 0) rules out."""
    join = "LEFT JOIN" if left else "JOIN"
    if _is_postgresql():
        return f"{join} LATERAL (SELECT * FROM {table} {alias} WHERE {match} OFFSET 0) {alias} ON TRUE"
    return f"{join} {table} {alias} ON {match}"


# --- Planner and session -------------------------------------------------------------------------

def analyze(table: str) -> None:
    """Statistics for a temporary table that a later statement joins or aggregates: PostgreSQL gathers none by
    itself, and guesses sort-and-merge plans several times slower than the hash ones the sizes call for."""
    if _is_postgresql():
        execute(f"ANALYZE {table}")


def tune_merge(*, rebuilt: bool) -> None:
    """Session settings for one merge, for this transaction only."""
    if _is_postgresql():
        # Large hash aggregates in memory rather than spilled to disk.
        execute("SET LOCAL work_mem = '256MB'")
        # The statements of a bounded batch run in tens of milliseconds; the lookups by key make their
        # estimated costs high enough for PostgreSQL to compile them first, which takes longer (~0.3 s each).
        # A rebuild's aggregates over millions of rows gain from it (batches before it in the same transaction
        # turned it off).
        execute("RESET jit" if rebuilt else "SET LOCAL jit = off")


def is_lock_busy(error: OperationalError) -> bool:
    """SQLite: a database locked by another run means that run is busy, as a skipped row lock does on
    PostgreSQL (where any OperationalError is a real one)."""
    return not _is_postgresql() and "locked" in str(error)


# --- Values as the backends return them ----------------------------------------------------------

def as_datetime(value: str | dt.datetime) -> dt.datetime:
    if isinstance(value, str):
        value = parse_datetime(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, dt.UTC)


def as_date(value: str | dt.date) -> dt.date:
    return parse_date(value) if isinstance(value, str) else value
