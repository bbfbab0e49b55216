"""Celery tasks of profiles: thin wrappers around `profiles.services.imports`."""
from celery import shared_task
from django.db import OperationalError

from profiles.services import imports


@shared_task(
    name="profiles.list_import_run",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=10,
    max_retries=5,
    soft_time_limit=3300,
    time_limit=3600,
)
def list_import_run(import_id: int) -> None:
    """Runs a CSV import; a retry or a redelivery resumes after the rows already committed."""
    imports.list_import_run(import_id=import_id)


def list_import_queue(import_id: int) -> None:
    """Queues an import whose mapping is set; `profiles.apps` hands this to the services."""
    list_import_run.delay(import_id)
