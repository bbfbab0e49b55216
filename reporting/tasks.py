"""Periodic reporting jobs (see `CELERY_BEAT_SCHEDULE`); both are safe to run twice."""
from celery import shared_task

from reporting.retention import events_purge_expired
from reporting.statistics import reports_refresh


@shared_task(name="reporting.refresh_reports", soft_time_limit=240, time_limit=300)
def refresh_reports() -> int:
    return reports_refresh()


@shared_task(name="reporting.purge_expired_events", soft_time_limit=1500, time_limit=1800)
def purge_expired_events() -> int:
    return events_purge_expired()
