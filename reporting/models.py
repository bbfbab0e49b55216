"""Rollup tables filled by the consolidation jobs; every report reads these, never raw events.

Event rollups carry `humans_only`: each event is added to the `humans_only=False` row ("all") and,
unless it is a machine event, to the `humans_only=True` row too. A report's humans/all switch is then
one row lookup, and distinct counts stay exact in both scopes.

Per-entity tables (`MessageRollup`, `MessageLinkRollup`, `PersonRollup`) hold, per scope, the first
time something happened; a first time appearing (or moving to an earlier bucket) is what increments the
distinct counters of the small tables, which is how distinct counts stay incremental and exact.

The per-entity tables are written in bulk (a recompute inserts a row per message, link and person of the
delivery), so their `delivery` carries no database constraint, whose per-row check would cost as much as the
insert (Django still deletes them with their delivery), and a single index: their natural key as primary key,
leading with `delivery` so that it serves both the merges' lookups and a recompute's delete.

Message-based tables (`DomainMessageStats`, `FailureStats`, `FailureTimeStats`, `ThroughputStats`, `DeliveryReportState`)
are refreshed from the delivery's `Message` rows, not from events.
"""
from django.db import models

from deliveries.models import Delivery


class ConsolidationState(models.Model):
    """The consolidation pointer: every event id up to `pointer` is consolidated, except open gaps."""

    name = models.CharField(max_length=32, primary_key=True)
    pointer = models.BigIntegerField(default=0)
    consolidated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.pointer}"


class ConsolidationGap(models.Model):
    """Event ids below the pointer not seen yet: a transaction that has not committed, or rolled back.

    Ids come from a sequence at insert time but become visible at commit, so a concurrent ingesting
    transaction can commit ids lower than ones already consolidated. Each run re-reads its open gaps and
    consolidates what has appeared; a gap older than the time-to-live is dropped (rolled back).
    """

    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()
    noted_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["first_id"], name="gap_first_id_idx")]

    def __str__(self) -> str:
        return f"{self.first_id}-{self.last_id}"


class DeliveryRollup(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="+")
    humans_only = models.BooleanField()
    opens = models.BigIntegerField(default=0)
    distinct_opens = models.BigIntegerField(default=0)
    clicks = models.BigIntegerField(default=0)
    distinct_clicks = models.BigIntegerField(default=0)
    persons = models.BigIntegerField(default=0)
    opt_outs = models.BigIntegerField(default=0)
    mirror_page_views = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["delivery", "humans_only"], name="deliveryrollup_key")]


class DomainRollup(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="+")
    humans_only = models.BooleanField()
    domain = models.CharField(max_length=255)
    opens = models.BigIntegerField(default=0)
    distinct_opens = models.BigIntegerField(default=0)
    clicks = models.BigIntegerField(default=0)
    distinct_clicks = models.BigIntegerField(default=0)
    persons = models.BigIntegerField(default=0)
    opt_outs = models.BigIntegerField(default=0)
    mirror_page_views = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["delivery", "humans_only", "domain"], name="domainrollup_key")
        ]


class TimeBucketRollup(models.Model):
    """Opens, clicks and opt-outs per half hour (UTC); hours and days are sums of half hours.

    Indexed by `bucket_start` too: the reports across deliveries read a period of every delivery."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="+")
    humans_only = models.BooleanField()
    bucket_start = models.DateTimeField()
    opens = models.BigIntegerField(default=0)
    distinct_opens = models.BigIntegerField(default=0)
    clicks = models.BigIntegerField(default=0)
    distinct_clicks = models.BigIntegerField(default=0)
    opt_outs = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["delivery", "humans_only", "bucket_start"], name="timebucketrollup_key")
        ]
        indexes = [models.Index(fields=["bucket_start"], name="timebucketrollup_start_idx")]


class LinkKind(models.TextChoices):
    URL = "url", "URL"
    LABEL = "label", "Label"
    CATEGORY = "category", "Category"


class LinkRollup(models.Model):
    """Clicks per link and day, by URL (key: the tracked URL id), label or category (key: the text).

    `distinct_clicks` counts recipients whose first click on that link fell on that day, so a sum over
    days is exact over the whole delivery and means "first clicked within the period" for a period.
    """

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="+")
    humans_only = models.BooleanField()
    kind = models.CharField(max_length=8, choices=LinkKind.choices)
    key = models.CharField(max_length=300)
    day = models.DateField()
    clicks = models.BigIntegerField(default=0)
    distinct_clicks = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["delivery", "humans_only", "kind", "key", "day"], name="linkrollup_key")
        ]


class ClickStreamRollup(models.Model):
    """How many recipients clicked tracked URL `to_url_id` right after `from_url_id` (by first clicks)."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="+")
    humans_only = models.BooleanField()
    from_url_id = models.BigIntegerField()
    to_url_id = models.BigIntegerField()
    recipients = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["delivery", "humans_only", "from_url_id", "to_url_id"], name="clickstreamrollup_key"
            )
        ]


class UserAgentRollup(models.Model):
    """Opens per distinct user agent (0: none); OS, browser and device are joined at query time, so a
    user agent parsed after consolidation still lands in the right facet."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="+")
    humans_only = models.BooleanField()
    user_agent_id = models.BigIntegerField()
    opens = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["delivery", "humans_only", "user_agent_id"], name="useragentrollup_key")
        ]


class MessageRollup(models.Model):
    """Per message opened or clicked: its recipient domain and first times, all events and humans only.

    A counted click implies the message was opened (images may be blocked), so `first_open_at` is the
    first open or click. No per-message counts: no report reads them, and keeping them would mean writing
    the row of every message of every batch, where first times move for a few.
    """

    pk = models.CompositePrimaryKey("delivery_id", "message_id")
    message_id = models.BigIntegerField()
    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    domain = models.CharField(max_length=255)
    first_open_at = models.DateTimeField(null=True)
    first_human_open_at = models.DateTimeField(null=True)
    first_click_at = models.DateTimeField(null=True)
    first_human_click_at = models.DateTimeField(null=True)


class MessageLinkRollup(models.Model):
    """Per message and tracked URL: the first click, all and humans only. A label's or category's first
    click is the earliest over its URLs, so the distinct counts by label and category derive from these."""

    pk = models.CompositePrimaryKey("delivery_id", "message_id", "tracked_url_id")
    message_id = models.BigIntegerField()
    tracked_url_id = models.BigIntegerField()
    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    first_click_at = models.DateTimeField(null=True)
    first_human_click_at = models.DateTimeField(null=True)


class PersonRollup(models.Model):
    """The persons who clicked: a browser id, or the recipient when the click carried none.

    `domain` (all clicks) and `human_domain` (human clicks; empty: none) are the smallest recipient
    domain the person clicked from, so each person counts in exactly one domain of the per-domain table.
    """

    pk = models.CompositePrimaryKey("delivery_id", "person_key")
    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    person_key = models.CharField(max_length=40)
    domain = models.CharField(max_length=255)
    human_domain = models.CharField(max_length=255, null=True)


class DomainMessageStats(models.Model):
    """Messages per recipient domain, from the delivery log."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="+")
    domain = models.CharField(max_length=255)
    to_deliver = models.BigIntegerField(default=0)
    text_messages = models.BigIntegerField(default=0)
    success = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    hard_bounces = models.BigIntegerField(default=0)
    soft_bounces = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["delivery", "domain"], name="domainmessagestats_key")]


class FailureStats(models.Model):
    """Failed and excluded messages by failure type, reason and domain."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16)
    failure_type = models.CharField(max_length=8)
    failure_reason = models.CharField(max_length=24)
    domain = models.CharField(max_length=255)
    messages = models.BigIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["delivery"], name="failurestats_delivery_idx")]


class FailureTimeStats(models.Model):
    """Failed messages per hour of their failure (UTC) and failure type: a bounce that came back days
    after sending counts in the hour it came back. Days are sums of hours."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    failure_type = models.CharField(max_length=8)
    messages = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["delivery", "hour", "failure_type"], name="failuretimestats_key")]


class ThroughputStats(models.Model):
    """Messages processed per hour of sending, success vs error; indexed by `hour` for the reports across
    deliveries, which read a period of every delivery."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    success = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["delivery", "hour"], name="throughputstats_key")]
        indexes = [models.Index(fields=["hour"], name="throughputstats_hour_idx")]


class DeliveryReportState(models.Model):
    """Per delivery: delivery-log figures and what the message statistics were refreshed from."""

    delivery = models.OneToOneField(Delivery, on_delete=models.CASCADE, primary_key=True, related_name="+")
    text_messages = models.BigIntegerField(default=0)
    new_quarantines = models.BigIntegerField(default=0)
    refreshed_at = models.DateTimeField(null=True)
    # The delivery counters (processed, success, errors, status) and its number of failures that set an
    # address's status, which the statistics were computed from.
    refreshed_from = models.JSONField(default=dict)
    # Raw events up to this time were purged by retention: a recompute would lose them.
    events_purged_before = models.DateTimeField(null=True)


class DeliveryReport(Delivery):
    """The deliveries as the admin's reporting section lists them, with the recompute action."""

    class Meta:
        proxy = True
        verbose_name = "delivery report"
