"""What comes back after a message was handed over: a bounce that arrives later, or a complaint.

The bounce mailbox and the ESP webhooks both report here, in bulk, once they have matched what came
back to its Message. A bounce fails a message that was sent (its delivery's success becomes an error)
and counts toward the address's quarantine; a complaint leaves the message as it is (it was delivered)
and denylists the address. Each message counts once per kind, whatever reports it and however often:
the mailbox and a webhook reporting the same bounce, or a replayed event, change nothing the second time.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from deliveries.models import Delivery, FailureType, Message, MessageStatus
from deliveries.signals import messages_returned
from profiles.models import AddressFailure, AddressFailureType
from profiles.services.quarantine import COMPLAINT, AddressFailureReport, address_outcomes_record

logger = logging.getLogger(__name__)

BOUNCE = "bounce"
KINDS = (BOUNCE, COMPLAINT)
DETAIL_LIMIT = 2000


@dataclass(frozen=True)
class ReturnedFailure:
    """One message's return: `kind` bounce or complaint; for a bounce its `failure_type` (hard, soft,
    or ignored for a delay, which records nothing) and `failure_reason` (deliveries.models.FailureReason);
    `detail` is the diagnostic shown in the delivery log."""

    message_id: int
    kind: str
    failure_type: str = ""
    failure_reason: str = ""
    detail: str = ""


@dataclass(frozen=True)
class ReturnsRecorded:
    messages_failed: int = 0
    complaints: int = 0
    # Returns that changed nothing: a replay, a delay, a message already failed, or an unknown message id.
    unchanged: int = 0


def _address_failure(message: Message, returned: ReturnedFailure) -> AddressFailureReport | None:
    if message.profile_id is None:
        return None
    # The message and its delivery tie the failure to that delivery's new quarantines (reporting.statistics).
    if returned.kind == COMPLAINT:
        return AddressFailureReport(
            failure_type=AddressFailureType.COMPLAINT, reason=COMPLAINT, profile_id=message.profile_id,
            event_key=f"message:{message.pk}:complaint", message_id=message.pk, delivery_id=message.delivery_id,
        )
    return AddressFailureReport(
        failure_type=returned.failure_type, reason=returned.failure_reason, profile_id=message.profile_id,
        event_key=f"message:{message.pk}:returned", message_id=message.pk, delivery_id=message.delivery_id,
    )


def returns_record(returns: Sequence[ReturnedFailure], *, at: datetime | None = None) -> ReturnsRecorded:
    """Applies what came back: sent messages that bounced become failed (with type, reason and detail,
    their delivery's counters moved from success to errors), and the addresses' failures go to the
    quarantine rule. One transaction; the messages are locked in id order; the number of queries does
    not grow with the number of returns."""
    at = at or timezone.now()
    wanted = [r for r in returns if r.kind == COMPLAINT or (r.kind == BOUNCE and r.failure_type in (FailureType.HARD, FailureType.SOFT))]
    with transaction.atomic():
        messages = {
            message.pk: message
            for message in Message.objects.select_for_update().filter(pk__in={r.message_id for r in wanted}).order_by("pk")
        }
        newly_failed: dict[int, ReturnedFailure] = {}
        reports: list[tuple[AddressFailureReport, ReturnedFailure]] = []
        for returned in wanted:
            message = messages.get(returned.message_id)
            if message is None:
                continue
            if returned.kind == BOUNCE and message.status == MessageStatus.SENT and message.pk not in newly_failed:
                newly_failed[message.pk] = returned
            report = _address_failure(message, returned)
            if report is not None:
                reports.append((report, returned))
        failed_messages = []
        for message_id, returned in newly_failed.items():
            message = messages[message_id]
            message.status = MessageStatus.FAILED
            message.failure_type = returned.failure_type
            message.failure_reason = returned.failure_reason
            message.failure_detail = returned.detail[:DETAIL_LIMIT]
            message.failed_at = at
            failed_messages.append(message)
        if failed_messages:
            Message.objects.bulk_update(failed_messages, ["status", "failure_type", "failure_reason", "failure_detail", "failed_at"])
            for delivery_id, count in Counter(m.delivery_id for m in failed_messages).items():
                # Never below 0, should the counters already disagree with the log (a recompute rebuilds them):
                # a bounce that could not be recorded would come back every minute.
                Delivery.objects.filter(pk=delivery_id).update(
                    success=Greatest(F("success") - count, 0), errors=F("errors") + count, updated_at=at
                )
        new_reports = _new_address_failures([report for report, _ in reports], at)
        complaints = [returned for report, returned in reports if report.failure_type == AddressFailureType.COMPLAINT and report.event_key in new_reports]
        changed = list(newly_failed.values()) + complaints
        if changed:
            transaction.on_commit(lambda: messages_returned_announce(changed))
    return ReturnsRecorded(messages_failed=len(failed_messages), complaints=len(complaints), unchanged=len(returns) - len(changed))


def messages_returned_announce(returns: list[ReturnedFailure]) -> None:
    """Tells higher apps (webhooks) after the commit; a receiver's failure is logged, never undoes or
    interrupts what was recorded (the mailbox still removes the bounce it read)."""
    for receiver, result in messages_returned.send_robust(sender=ReturnedFailure, returns=returns):
        if isinstance(result, Exception):
            logger.error("messages_returned receiver %r failed", receiver, exc_info=result)


def _new_address_failures(reports: list[AddressFailureReport], at: datetime) -> set[str]:
    """Records the addresses' failures; returns the event keys that were new (not replays). The
    messages' row locks, held by the caller, keep another report of the same message out meanwhile."""
    if not reports:
        return set()
    keys = {report.event_key for report in reports}
    known = set(
        AddressFailure.objects.filter(profile_id__in={report.profile_id for report in reports}, event_key__in=keys)
        .values_list("event_key", flat=True)
    )
    address_outcomes_record(failures=reports, at=at)
    return keys - known
