"""The send pipeline: batches of a sending delivery handed to the email backend, at most once each.

Sending is at most once per recipient. A batch task reserves messages (`claimed_by` = its task id),
then moves one group of `SEND_FLUSH_SIZE` at a time to status `sending`, committed *before* the group is
handed to SMTP, and records the group's results right after. If the worker dies in between, the
redelivered task (same id) or a later one (after `CLAIM_LEASE`) finds messages still `sending`: they
may have gone out, and SMTP gives no way to ask, so they are marked failed/`interrupted`, never resent.
Reserved messages still `pending` were never handed over and are simply released.

The rate limits (`deliveries.services.throttling`) are asked once per batch, for all its messages: those
without a token are released at once, still `pending`, for a later batch, and a batch that got no token
at all says how long to wait (`BatchOutcome.wait_seconds`): the task re-queues itself with that
countdown instead of sleeping in the worker.
"""
from __future__ import annotations

import logging
import sys
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.db.models import CharField, F, Q, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from deliveries.models import Delivery, DeliveryStatus, FailureReason, FailureType, Message, MessageStatus
from deliveries.services.lifecycle import AuditAction, _audit, _locked, _transition
from deliveries.services.mime import _email_for
from deliveries.services.rendering import SendContent, send_content
from deliveries.services.returns import BOUNCE, ReturnedFailure, messages_returned_announce
from deliveries.services.throttling import RateLimitsUnavailable, buckets_take
from deliveries.smtp_errors import classify_exception, is_connection_error
from deliveries.signals import delivery_finished
from profiles.emails import email_domain
from profiles.services.quarantine import AddressFailureReport, address_outcomes_record

logger = logging.getLogger(__name__)


class RelayUnavailable(Exception):
    """The email backend cannot be reached; nothing was sent, the batch can be retried later."""


SEND_FLUSH_SIZE = 20
SENDING_SWITCH_INTERVAL = 0.001
# Longer than a batch task's hard time limit: a claim older than this belongs to a dead worker.
CLAIM_LEASE = timedelta(minutes=15)


def _recover_claims(delivery_id: int, task_id: str, now: datetime) -> int:
    """Settles messages a dead execution left behind; returns how many became `interrupted`."""
    stale = now - CLAIM_LEASE
    mine_or_stale = Message.objects.filter(delivery_id=delivery_id).exclude(claimed_by="").filter(
        Q(claimed_by=task_id) | Q(claimed_at__lt=stale)
    )
    with transaction.atomic():
        # Soft: the address did nothing wrong, so no bounce is recorded against it.
        interrupted = mine_or_stale.filter(status=MessageStatus.SENDING).update(
            status=MessageStatus.FAILED,
            failure_type=FailureType.SOFT,
            failure_reason=FailureReason.INTERRUPTED,
            failure_detail="The worker stopped while this message was being handed to SMTP; not resent.",
            failed_at=now,
        )
        if interrupted:
            Delivery.objects.filter(pk=delivery_id).update(
                processed=F("processed") + interrupted, errors=F("errors") + interrupted
            )
        mine_or_stale.filter(status=MessageStatus.PENDING).update(claimed_by="", claimed_at=None)
    if interrupted:
        logger.warning("delivery %s: %s message(s) marked interrupted (not resent)", delivery_id, interrupted)
    return interrupted


def _finish_if_done(delivery_id: int) -> bool:
    with transaction.atomic():
        delivery = _locked(delivery_id)
        if delivery.status != DeliveryStatus.SENDING:
            return True
        if Message.objects.filter(
            delivery_id=delivery_id, status__in=[MessageStatus.PENDING, MessageStatus.SENDING]
        ).exists():
            return False
        _transition(delivery, DeliveryStatus.FINISHED, action="finish")
        delivery.finished_at = timezone.now()
        delivery.save(update_fields=["status", "finished_at", "updated_at"])
        _audit(delivery, AuditAction.FINISHED, None, processed=delivery.processed, success=delivery.success, errors=delivery.errors)
        transaction.on_commit(lambda: delivery_finished.send_robust(sender=Delivery, delivery_id=delivery_id))
        return True


@dataclass(frozen=True)
class BatchOutcome:
    """What a batch leaves to do: true when another batch is due, after `wait_seconds` (a batch the rate
    limits gave no token to)."""

    more: bool
    wait_seconds: float = 0.0

    def __bool__(self) -> bool:
        return self.more


def _within_rates(delivery: Delivery, messages: list[Message], task_id: str, now: datetime) -> tuple[list[Message], float]:
    """The messages the rate limits let go now, and the wait when none may; the others are released."""
    try:
        grant = buckets_take(
            delivery_id=delivery.pk, max_per_hour=delivery.max_per_hour, emails=[m.email for m in messages], now=now.timestamp()
        )
    except RateLimitsUnavailable:
        # Nothing was handed over: the batch's messages go back for the retry.
        Message.objects.filter(id__in=[m.id for m in messages], claimed_by=task_id, status=MessageStatus.PENDING).update(
            claimed_by="", claimed_at=None
        )
        raise
    deferred = [message.id for message, granted in zip(messages, grant.granted) if not granted]
    if deferred:
        Message.objects.filter(id__in=deferred, claimed_by=task_id, status=MessageStatus.PENDING).update(claimed_by="", claimed_at=None)
    return [message for message, granted in zip(messages, grant.granted) if granted], grant.wait_seconds


@dataclass
class _Outcome:
    message: Message
    # The address's failure as the quarantine rule counts it (hard or soft), None for no bounce.
    bounce_type: str | None = None


def _record_outcomes(delivery_id: int, outcomes: list[_Outcome], sent_at: datetime) -> None:
    """Writes one flush group's results: one UPDATE for the sent ones, counters with F()."""
    sent_ids = [o.message.id for o in outcomes if o.message.status == MessageStatus.SENT]
    failed = [o.message for o in outcomes if o.message.status == MessageStatus.FAILED]
    if sent_ids:
        Message.objects.filter(id__in=sent_ids).update(status=MessageStatus.SENT, sent_at=sent_at)
    if failed:
        for message in failed:
            message.failed_at = sent_at
        Message.objects.bulk_update(failed, ["status", "failure_type", "failure_reason", "failure_detail", "failed_at"])
    Delivery.objects.filter(pk=delivery_id).update(
        processed=F("processed") + len(outcomes),
        success=F("success") + len(sent_ids),
        errors=F("errors") + len(failed),
        updated_at=sent_at,
    )
    # The addresses' side, in bulk: bounces toward quarantine, and a success clears the soft count.
    bounces = [
        AddressFailureReport(
            failure_type=o.bounce_type, reason=o.message.failure_reason, profile_id=o.message.profile_id,
            event_key=f"message:{o.message.id}:smtp", message_id=o.message.id, delivery_id=delivery_id,
        )
        for o in outcomes
        if o.bounce_type and o.message.profile_id
    ]
    delivered = [o.message.profile_id for o in outcomes if o.message.status == MessageStatus.SENT and o.message.profile_id]
    address_outcomes_record(failures=bounces, delivered_profile_ids=delivered, at=sent_at)
    refused = [
        ReturnedFailure(message_id=o.message.id, kind=BOUNCE, failure_type=o.bounce_type,
                        failure_reason=o.message.failure_reason, detail=o.message.failure_detail)
        for o in outcomes
        if o.bounce_type
    ]
    if refused:
        # A relay's refusal is a bounce as much as one that comes back later: announced alike.
        transaction.on_commit(lambda: messages_returned_announce(refused))


def _flush_and_advance(delivery_id: int, outcomes: list[_Outcome], next_group: list[Message], remaining_ids: list[int], message_id_suffix: str) -> bool:
    """In one transaction: records the last group's results and, if the delivery is still sending,
    marks the next group `sending` (with its Message-IDs) before it is handed to SMTP. Returns False
    (and releases the unsent reservations) when the delivery was paused or cancelled meanwhile."""
    now = timezone.now()
    with transaction.atomic():
        if outcomes:
            _record_outcomes(delivery_id, outcomes, now)
        if not next_group:
            return True
        status = Delivery.objects.select_for_update().filter(pk=delivery_id).values_list("status", flat=True).first()
        if status != DeliveryStatus.SENDING:
            Message.objects.filter(id__in=remaining_ids, status=MessageStatus.PENDING).update(claimed_by="", claimed_at=None)
            return False
        Message.objects.filter(id__in=[m.id for m in next_group]).update(
            status=MessageStatus.SENDING,
            claimed_at=now,
            smtp_message_id=Concat(Value("<"), Cast("id", CharField()), Value(message_id_suffix), output_field=CharField()),
        )
    for message in next_group:
        message.smtp_message_id = f"<{message.id}{message_id_suffix}"
    return True


def _failed(message: Message, exc: BaseException) -> _Outcome:
    result = classify_exception(exc)
    message.status = MessageStatus.FAILED
    message.failure_type = result.failure_type
    message.failure_reason = result.failure_reason
    message.failure_detail = result.detail
    outcome = _Outcome(message)
    if result.is_bounce and result.failure_type in (FailureType.HARD, FailureType.SOFT):
        outcome.bounce_type = str(result.failure_type)
    return outcome


def _hand_over(message: Message, email: EmailMessage, connection: BaseEmailBackend) -> _Outcome:
    """Runs on the batch's sending thread: the only code that talks to the backend."""
    try:
        connection.send_messages([email])
    except Exception as exc:
        if is_connection_error(exc):
            connection.close()
            try:
                connection.open()
            except OSError:
                logger.warning("SMTP connection could not be reopened", exc_info=True)
        return _failed(message, exc)
    message.status = MessageStatus.SENT
    return _Outcome(message)


def _hand_over_group(items: list[tuple[Message, EmailMessage] | _Outcome], connection: BaseEmailBackend) -> list[_Outcome]:
    return [item if isinstance(item, _Outcome) else _hand_over(*item, connection) for item in items]


def _submit_group(
    delivery: Delivery, content: SendContent, group: list[Message], connection: BaseEmailBackend, sender: ThreadPoolExecutor
) -> Future:
    """Renders the group here and queues it, whole, on the sending thread: the next group is
    rendered and the previous one recorded while this one goes through the SMTP round trips."""
    items: list[tuple[Message, EmailMessage] | _Outcome] = []
    for message in group:
        try:
            items.append((message, _email_for(delivery, content, message, connection)))
        except Exception as exc:
            items.append(_failed(message, exc))
    return sender.submit(_hand_over_group, items, connection)


def delivery_send_batch(
    *,
    delivery_id: int,
    task_id: str,
    batch_size: int | None = None,
    connection: BaseEmailBackend | None = None,
    now: datetime | None = None,
) -> BatchOutcome:
    """Sends the next batch of a sending delivery over one connection, within the rate limits as of `now`."""
    batch_size = batch_size or settings.BEACON_SEND_BATCH_SIZE
    now = now or timezone.now()
    _recover_claims(delivery_id, task_id, now)
    with transaction.atomic():
        delivery = _locked(delivery_id)
        if delivery.status != DeliveryStatus.SENDING:
            return False
        claimed_ids = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(delivery_id=delivery_id, status=MessageStatus.PENDING, claimed_by="")
            .order_by("id")
            .values_list("id", flat=True)[:batch_size]
        )
        Message.objects.filter(id__in=claimed_ids).update(claimed_by=task_id, claimed_at=now)
    if not claimed_ids:
        _finish_if_done(delivery_id)
        return BatchOutcome(False)
    messages = list(Message.objects.filter(id__in=claimed_ids).select_related("profile").order_by("id"))
    messages, wait_seconds = _within_rates(delivery, messages, task_id, now)
    if not messages:
        return BatchOutcome(True, wait_seconds)
    claimed_ids = [message.id for message in messages]
    content = send_content(delivery)
    # Message-ID: the message id plus a random part, so it is unique and known before the hand-over.
    domain = email_domain(delivery.from_email) or "beacon.local"
    message_id_suffix = f".{uuid.uuid4().hex[:16]}@{domain}>"
    connection = connection or get_connection()
    try:
        connection.open()
    except OSError as exc:  # smtplib's errors are OSErrors too
        Message.objects.filter(id__in=claimed_ids, status=MessageStatus.PENDING).update(claimed_by="", claimed_at=None)
        raise RelayUnavailable(f"The email backend cannot be reached: {exc}") from exc
    # Groups handed to the sending thread and not yet recorded: at most two at any time, so a crash
    # leaves at most 2 * SEND_FLUSH_SIZE messages uncertain (marked interrupted, never resent).
    in_flight: deque[Future] = deque()
    outcomes: list[_Outcome] = []
    # The sending thread wakes up on every SMTP reply; with Python's default 5 ms GIL switch
    # interval it would wait behind the rendering thread each time. Restored when the batch ends.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(SENDING_SWITCH_INTERVAL)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="beacon-smtp") as sender:
            for start in range(0, len(messages), SEND_FLUSH_SIZE):
                group = messages[start : start + SEND_FLUSH_SIZE]
                if not _flush_and_advance(delivery_id, outcomes, group, claimed_ids[start:], message_id_suffix):
                    # Paused or cancelled: what was already handed over completes and is recorded.
                    _flush_and_advance(delivery_id, [o for f in in_flight for o in f.result()], [], [], message_id_suffix)
                    return BatchOutcome(False)
                in_flight.append(_submit_group(delivery, content, group, connection, sender))
                outcomes = in_flight.popleft().result() if len(in_flight) > 1 else []
            outcomes += [o for f in in_flight for o in f.result()]
            in_flight.clear()
            _flush_and_advance(delivery_id, outcomes, [], [], message_id_suffix)
    except BaseException:
        for future in in_flight:
            future.cancel()
        raise
    finally:
        sys.setswitchinterval(switch_interval)
        connection.close()
    return BatchOutcome(not _finish_if_done(delivery_id))
