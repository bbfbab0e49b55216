"""Celery tasks of deliveries: thin wrappers around `deliveries.services`."""
import logging

from celery import shared_task

from beacon.exceptions import ServiceError
from deliveries import services
from deliveries.bounces.mailbox import MailboxError

logger = logging.getLogger(__name__)


@shared_task(
    name="deliveries.send_batch",
    bind=True,
    acks_late=True,
    autoretry_for=(services.RelayUnavailable, services.RateLimitsUnavailable),
    retry_backoff=30,
    max_retries=10,
    reject_on_worker_lost=True,
    soft_time_limit=600,
    time_limit=660,
)
def delivery_send_batch_task(self, delivery_id: int) -> None:
    """One batch over one SMTP connection; re-queues itself while the delivery has pending messages.

    Safe to run twice: the task id is the claim owner, so a redelivered execution settles what the
    previous one left (see `deliveries.services.sending`) instead of sending it again.
    """
    if self.request.is_eager:
        # In-process (embedded default): a loop, since re-queuing would recurse once per batch; a batch
        # held back by the rate limits is queued again after its wait (in the tests, which run every task
        # where it is queued, the test sends the rest by hand on its own clock).
        while outcome := services.delivery_send_batch(delivery_id=delivery_id, task_id=self.request.id or "eager"):
            if outcome.wait_seconds:
                if not self.app.conf.task_always_eager:
                    delivery_send_batch_task.apply_async((delivery_id,), countdown=outcome.wait_seconds)
                return
        return
    outcome = services.delivery_send_batch(delivery_id=delivery_id, task_id=self.request.id)
    if outcome:
        # Throttled: the next batch waits in the broker, not in this worker.
        delivery_send_batch_task.apply_async((delivery_id,), countdown=outcome.wait_seconds or None)


def delivery_send_batch_queue(delivery_id: int) -> None:
    """Queues a batch of a delivery that starts or resumes sending; `deliveries.apps` hands this to the services."""
    delivery_send_batch_task.delay(delivery_id)


@shared_task(
    name="deliveries.analyze",
    acks_late=True,
    reject_on_worker_lost=True,
    # Each chunk of the delivery log renews the analysis's lease; this bounds a run as a whole.
    soft_time_limit=3600,
    time_limit=3660,
)
def delivery_analyze_task(delivery_id: int, actor_id: int | None = None) -> None:
    """The target analysis of a delivery made `analyzing` by `services.delivery_analysis_request`.

    Safe to run twice: a run takes the analysis over and starts it again (see
    `deliveries.services.analysis`); a delivery no longer analyzing is left alone.
    """
    try:
        services.delivery_analysis_run(delivery_id=delivery_id, actor_id=actor_id)
    except ServiceError:
        pass  # A refused analysis is an outcome, stored on the delivery (back to draft, with why).


def delivery_analysis_queue(delivery_id: int, actor_id: int | None) -> None:
    """Queues the analysis of a delivery; `deliveries.apps` hands this to the services."""
    delivery_analyze_task.delay(delivery_id, actor_id)


@shared_task(name="deliveries.recover_analyses", soft_time_limit=120, time_limit=150)
def deliveries_analysis_recover_task() -> int:
    """Every minute (Celery beat): deliveries whose analysis died go back to draft."""
    return services.deliveries_analysis_recover()


@shared_task(name="deliveries.fetch_bounces", soft_time_limit=240, time_limit=270)
def bounce_mailbox_fetch_task() -> str:
    """Every minute (Celery beat): reads the bounce mailbox, if BEACON_BOUNCE_MAILBOX is set. A run that
    finds another one reading gives way; a mailbox that cannot be read is logged and tried next minute."""
    try:
        fetch = services.bounce_mailbox_fetch()
    except services.MailboxBusy:
        return "busy"
    except MailboxError:
        logger.warning("the bounce mailbox could not be read", exc_info=True)
        return "mailbox error"
    return "not configured" if fetch is None else str(fetch)
@shared_task(name="deliveries.start_scheduled", soft_time_limit=120, time_limit=150)
def deliveries_start_scheduled_task() -> int:
    """Every minute (Celery beat): scheduled deliveries whose time has come start sending, each once."""
    return services.deliveries_start_due()
