""""Recompute delivery and tracking indicators": one delivery's rollups rebuilt from its raw events."""
from beacon.exceptions import NotFound, TransitionNotAllowed
from deliveries.models import Delivery
from deliveries.services import delivery_counters_recount
from reporting.consolidation import sql
from reporting.consolidation.batch import EVENTS
from reporting.consolidation.merge import apply_event_batch
from reporting.consolidation.pointer import BATCH_SIZE, MAX_BATCHES_PER_RUN, consolidate_batch, consolidation_lock
from reporting.consolidation.sql import Table
from reporting.models import (
    ClickStreamRollup,
    ConsolidationGap,
    DeliveryReportState,
    DeliveryRollup,
    DomainRollup,
    LinkRollup,
    MessageLinkRollup,
    MessageRollup,
    PersonRollup,
    TimeBucketRollup,
    UserAgentRollup,
)
from reporting.statistics import delivery_message_stats_refresh

GAPS = Table(ConsolidationGap)
EVENT_ROLLUPS = (
    DeliveryRollup, DomainRollup, TimeBucketRollup, LinkRollup, ClickStreamRollup, UserAgentRollup,
    MessageRollup, MessageLinkRollup, PersonRollup,
)


def delivery_recompute(*, delivery_id: int) -> Delivery:
    """"Recompute delivery and tracking indicators": rebuilds the delivery's rollups from its raw events
    and its counters and statistics from its messages, in one transaction. Events not yet consolidated
    are consolidated first; the rebuild takes exactly the consolidated ones, so none counts twice.

    Links deleted since their events were consolidated are grouped as deleted links afterwards.
    Refused (409) once retention has purged some of the delivery's raw events: the rebuild would lose
    them, while the rollups still hold them.
    """
    report_state = DeliveryReportState.objects.filter(delivery_id=delivery_id).first()
    if report_state is not None and report_state.events_purged_before is not None:
        raise TransitionNotAllowed(
            "Raw events of this delivery older than the retention period were purged; "
            "its indicators can no longer be rebuilt from them.",
        )
    with consolidation_lock(wait=True) as state:
        delivery = Delivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None:
            raise NotFound("No such delivery.")
        # What has been committed so far is consolidated first, so the rebuild is up to date.
        for _ in range(MAX_BATCHES_PER_RUN):
            if not consolidate_batch(state, BATCH_SIZE)[1]:
                break
        for model in EVENT_ROLLUPS:
            model.objects.filter(delivery_id=delivery_id).delete()
        # Exactly the events consolidation has merged: any past the pointer or in its gaps (committed just
        # now, or beyond the batches above) are the next run's, and merging them here too would count them twice.
        # Those in gaps are few, so they are listed rather than every event checked against every gap.
        in_gaps = sql.fetch(
            f"SELECT e.{EVENTS.id} FROM {GAPS} g JOIN {EVENTS} e "
            f"ON e.{EVENTS.id} BETWEEN g.{GAPS.first_id} AND g.{GAPS.last_id} WHERE e.{EVENTS.delivery} = %s",
            [delivery_id],
        )
        condition = f"e.{EVENTS.delivery} = %s AND e.{EVENTS.id} <= %s"
        if in_gaps:
            condition += f" AND e.{EVENTS.id} NOT IN ({', '.join(str(int(pk)) for (pk,) in in_gaps)})"
        apply_event_batch(condition, [delivery_id, state.pointer], rebuilt=True)
        delivery_counters_recount(delivery=delivery)
        delivery_message_stats_refresh(delivery_id=delivery_id)
    return delivery
