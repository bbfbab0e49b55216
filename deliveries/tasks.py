"""Celery tasks of deliveries: thin wrappers around `deliveries.services`."""
from celery import shared_task

from deliveries import services


@shared_task(
    name="deliveries.send_batch",
    bind=True,
    acks_late=True,
    autoretry_for=(services.RelayUnavailable,),
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
        # In-process (embedded default): a loop, since re-queuing would recurse once per batch.
        while services.delivery_send_batch(delivery_id=delivery_id, task_id=self.request.id or "eager"):
            pass
        return
    if services.delivery_send_batch(delivery_id=delivery_id, task_id=self.request.id):
        delivery_send_batch_task.delay(delivery_id)


def delivery_send_batch_queue(delivery_id: int) -> None:
    """Queues a batch of a delivery that starts or resumes sending; `deliveries.apps` hands this to the services."""
    delivery_send_batch_task.delay(delivery_id)
