"""Statistics from the delivery log (per domain, failures, failures over time, throughput, new quarantines),
and the every-minute reports job.

A failure counts the same whenever it happened: at sending (the relay's answer) or later (a bounce or a
complaint coming back), since all are read from the messages' status and failure fields. A message
failed later must move the delivery's counters (success and errors) as sending does, which is what
tells `message_stats_refresh_due` the delivery's statistics are stale.

"New quarantines" are the delivery's messages whose failure quarantined or denylisted the address: the
`AddressFailure` rows the quarantine rule recorded with this delivery's id and the status they set. A
later release does not lower it; the count is history, not the addresses' status today. A complaint
moves no counter, so the job also compares each delivery's number of such rows with the last refresh's.
"""
from django.db import models, transaction
from django.db.models import Count, Q
from django.db.models.functions import Coalesce, TruncHour
from django.utils import timezone

from deliveries.models import Delivery, DeliveryStatus, FailureType, Message, MessageStatus
from profiles.emails import email_domain_expression
from profiles.models import AddressFailure
from reporting.consolidation.pointer import events_consolidate
from reporting.models import DeliveryReportState, DomainMessageStats, FailureStats, FailureTimeStats, ThroughputStats

SENDING_STATUSES = (DeliveryStatus.SENDING, DeliveryStatus.PAUSED)


def _messages_with_domain(delivery_id: int) -> models.QuerySet:
    """The delivery's messages annotated with `domain`, as `email_domain` computes it."""
    return (
        Message.objects.filter(delivery_id=delivery_id)
        .annotate(domain=email_domain_expression("email"))
    )


def delivery_message_stats_refresh(*, delivery_id: int) -> None:
    """Rebuilds the delivery-log statistics (per domain, failures, throughput) of one delivery."""
    delivery = Delivery.objects.filter(pk=delivery_id).first()
    if delivery is None:
        return
    messages = _messages_with_domain(delivery_id)
    not_ignored = ~Q(status=MessageStatus.IGNORED)
    failed = Q(status=MessageStatus.FAILED)
    domain_rows = [
        DomainMessageStats(delivery_id=delivery_id, **row)
        for row in messages.values("domain").annotate(
            to_deliver=Count("id", filter=not_ignored),
            text_messages=Count("id", filter=not_ignored & Q(email_format="text")),
            success=Count("id", filter=Q(status=MessageStatus.SENT)),
            errors=Count("id", filter=failed),
            hard_bounces=Count("id", filter=failed & Q(failure_type=FailureType.HARD)),
            soft_bounces=Count("id", filter=failed & Q(failure_type=FailureType.SOFT)),
        ).order_by()
    ]
    failure_rows = [
        FailureStats(delivery_id=delivery_id, **row)
        for row in messages.filter(status__in=[MessageStatus.FAILED, MessageStatus.IGNORED])
        .values("status", "failure_type", "failure_reason", "domain")
        .annotate(messages=Count("id"))
        .order_by()
    ]
    throughput_rows = [
        ThroughputStats(delivery_id=delivery_id, **row)
        for row in Message.objects.filter(delivery_id=delivery_id, status__in=[MessageStatus.SENT, MessageStatus.FAILED])
        .annotate(hour=TruncHour(Coalesce("sent_at", "claimed_at")))
        .exclude(hour=None)
        .values("hour")
        .annotate(
            success=Count("id", filter=Q(status=MessageStatus.SENT)),
            errors=Count("id", filter=failed),
        )
        .order_by()
    ]
    failure_time_rows = [
        FailureTimeStats(delivery_id=delivery_id, **row)
        for row in Message.objects.filter(delivery_id=delivery_id, status=MessageStatus.FAILED)
        .annotate(hour=TruncHour(Coalesce("failed_at", "sent_at", "claimed_at")))
        .exclude(hour=None)
        .values("hour", "failure_type")
        .annotate(messages=Count("id"))
        .order_by()
    ]
    # Distinct messages: a quarantined address that then complains is denylisted by the same message.
    quarantines = _status_setting_failures().filter(delivery_id=delivery_id).aggregate(
        failures=Count("id"), messages=Count("message_id", distinct=True)
    )
    with transaction.atomic():
        for model in (DomainMessageStats, FailureStats, FailureTimeStats, ThroughputStats):
            model.objects.filter(delivery_id=delivery_id).delete()
        DomainMessageStats.objects.bulk_create(domain_rows)
        FailureStats.objects.bulk_create(failure_rows)
        FailureTimeStats.objects.bulk_create(failure_time_rows)
        ThroughputStats.objects.bulk_create(throughput_rows)
        DeliveryReportState.objects.update_or_create(
            delivery_id=delivery_id,
            defaults={
                "text_messages": sum(row.text_messages for row in domain_rows),
                "new_quarantines": quarantines["messages"],
                "refreshed_at": timezone.now(),
                "refreshed_from": _counters_of(delivery, quarantines["failures"]),
            },
        )


def _status_setting_failures() -> models.QuerySet:
    """The failures tied to a delivery that quarantined or denylisted their address (the partial index's rows)."""
    return AddressFailure.objects.exclude(delivery_id=None).exclude(status_set="")


def _counters_of(delivery: Delivery, status_setting_failures: int) -> dict:
    return {
        "status": delivery.status,
        "to_deliver": delivery.to_deliver,
        "processed": delivery.processed,
        "success": delivery.success,
        "errors": delivery.errors,
        "status_setting_failures": status_setting_failures,
    }


def message_stats_refresh_due() -> int:
    """Refreshes the statistics of deliveries sending, or whose counters or status-setting failures moved
    since the last refresh."""
    refreshed_from = dict(DeliveryReportState.objects.values_list("delivery_id", "refreshed_from"))
    failures = dict(
        _status_setting_failures().values("delivery_id").annotate(failures=Count("id")).values_list("delivery_id", "failures").order_by()
    )
    refreshed = 0
    for delivery in Delivery.objects.exclude(status=DeliveryStatus.DRAFT).only(
        "id", "status", "to_deliver", "processed", "success", "errors"
    ):
        counters = _counters_of(delivery, failures.get(delivery.pk, 0))
        if delivery.status in SENDING_STATUSES or refreshed_from.get(delivery.pk) != counters:
            delivery_message_stats_refresh(delivery_id=delivery.pk)
            refreshed += 1
    return refreshed


def reports_refresh() -> int:
    """The every-minute job: consolidates new events, then refreshes delivery-log statistics."""
    consolidated = events_consolidate()
    message_stats_refresh_due()
    return consolidated
