"""Incremental consolidation: the lock, the pointer and its gaps, and `events_consolidate`.

Every event id up to the pointer is consolidated, except those in open gaps (`ConsolidationGap`): ids come
from a sequence at insert time but become visible at commit, so a late commit can show an id below the pointer.
"""
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from reporting.consolidation import sql
from reporting.consolidation.batch import EVENTS
from reporting.consolidation.merge import apply_event_batch
from reporting.models import ConsolidationGap, ConsolidationState

STATE_NAME = "events"
BATCH_SIZE = 100_000
MAX_BATCHES_PER_RUN = 50
# Ingestion transactions last milliseconds; an id missing for this long was rolled back.
GAP_TIME_TO_LIVE = dt.timedelta(minutes=30)
# The ids of one batch, temporary.
BATCH_IDS = "reporting_batch_ids"


@contextmanager
def consolidation_lock(*, wait: bool) -> Iterator[ConsolidationState | None]:
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


def consolidate_batch(state: ConsolidationState, batch_size: int) -> tuple[int, bool]:
    """Merges the next batch (new ids past the pointer, and ids appeared in the gaps) under the lock held by
    `state`; returns how many events it read and whether more new ones may be waiting."""
    now = timezone.now()
    ConsolidationGap.objects.filter(noted_at__lt=now - GAP_TIME_TO_LIVE).delete()
    gaps = list(ConsolidationGap.objects.order_by("first_id"))
    # The ids of the batch are read once into a table, and the batch is exactly those rows: an id that
    # commits meanwhile stays in its gap, for the next run.
    sql.execute(f"DROP TABLE IF EXISTS {BATCH_IDS}")
    sql.create_temporary(
        BATCH_IDS, f"SELECT {EVENTS.id} FROM {EVENTS} WHERE {EVENTS.id} > %s ORDER BY {EVENTS.id} LIMIT %s",
        [state.pointer, batch_size],
    )
    sql.analyze(BATCH_IDS)
    for chunk in sql.chunks(gaps, 100):
        ranges = " OR ".join(f"{EVENTS.id} BETWEEN {int(gap.first_id)} AND {int(gap.last_id)}" for gap in chunk)
        sql.execute(f"INSERT INTO {BATCH_IDS} (id) SELECT {EVENTS.id} FROM {EVENTS} WHERE {ranges}")
    ids = [pk for (pk,) in sql.fetch(f"SELECT id FROM {BATCH_IDS} ORDER BY id")]
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
        apply_event_batch(
            f"e.{EVENTS.id} BETWEEN %s AND %s AND e.{EVENTS.id} IN (SELECT id FROM {BATCH_IDS})", [ids[0], ids[-1]]
        )
    sql.execute(f"DROP TABLE {BATCH_IDS}")
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
            with consolidation_lock(wait=False) as state:
                if state is None:
                    return total
                consolidated, more = consolidate_batch(state, batch_size)
        except OperationalError as error:
            # Another run holds the database: this one gives way (its transaction rolled back), as to a lock taken.
            if not sql.is_lock_busy(error):
                raise
            return total
        total += consolidated
        if not more:
            break
    return total
