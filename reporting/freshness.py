"""How fresh the reports are, and keeping them fresh where no Celery beat runs.

In production Celery beat runs `reports_refresh` every minute (the consolidation catches up with the
events), and `BEACON_REPORTS_MAX_AGE_SECONDS` is unset. The embedded default has no beat: tasks run
in-process and nothing is periodic. There, a report read while the last consolidation run is older than
`BEACON_REPORTS_MAX_AGE_SECONDS` (30 s by default) refreshes the reports first, so a click shows in the
reports at the next read with nobody pressing a button.

Why on read rather than a scheduler thread in the web process: the work is done only when someone
looks, by the request that looks, with nothing to start, stop or watch (runserver's autoreloader runs
the code in two processes, and a thread that dies does so silently). The work is bounded: one batch
of consolidation (`BATCH_SIZE` events at most, a few thousand at the embedded default's sizes) and the
delivery-log statistics of the deliveries that moved. It never runs twice at once: the consolidation
lock is taken with skip_locked (a read that finds a run in progress reads what is consolidated and
does not wait), and a process-wide lock keeps a second request thread of the same process from
starting its own refresh meanwhile.
"""
import datetime as dt
import threading

from django.conf import settings
from django.utils import timezone

from reporting.consolidation.pointer import STATE_NAME, events_consolidate
from reporting.models import ConsolidationState
from reporting.statistics import message_stats_refresh_due

_refreshing = threading.Lock()


def consolidated_at() -> dt.datetime | None:
    """The time of the last consolidation run: the reports hold every event stored before it."""
    return ConsolidationState.objects.filter(name=STATE_NAME).values_list("consolidated_at", flat=True).first()


def reports_as_of() -> dt.datetime | None:
    """The time the reports are as of, after refreshing them first if they are older than
    `BEACON_REPORTS_MAX_AGE_SECONDS` (when that is set)."""
    as_of = consolidated_at()
    max_age = settings.BEACON_REPORTS_MAX_AGE_SECONDS
    if max_age is None or (as_of is not None and timezone.now() - as_of <= dt.timedelta(seconds=max_age)):
        return as_of
    if not _refreshing.acquire(blocking=False):
        return as_of
    try:
        events_consolidate(max_batches=1)
        message_stats_refresh_due()
    finally:
        _refreshing.release()
    return consolidated_at()
