"""Celery tasks of the webhooks app: each calls one service."""
import time

from celery import shared_task

from webhooks.services.retention import notifications_purge
from webhooks.services.sending import BATCH_SIZE, notifications_send_due

# Past this, the task hands the rest to a new run rather than hold a worker.
MAX_SECONDS = 30.0


@shared_task(name="webhooks.send_due", ignore_result=True, time_limit=600, soft_time_limit=540)
def send_due() -> int:
    """Sends the due notifications in batches; queued when events are owed, and every 10 s by beat for
    the retries. Safe to run twice at once: each batch is claimed."""
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < MAX_SECONDS:
        claimed = notifications_send_due()
        sent += claimed
        if claimed < BATCH_SIZE:
            return sent
    send_due.delay()
    return sent


@shared_task(name="webhooks.purge_log", ignore_result=True, time_limit=1800, soft_time_limit=1500)
def purge_log() -> int:
    return notifications_purge()
