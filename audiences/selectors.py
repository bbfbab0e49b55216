"""Reads on segments: who is in one now, as one SQL query (`audiences.compiler`)."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils import timezone

from audiences.compiler import rule_condition
from audiences.models import Segment
from audiences.rules import report_rule, rule_validate
from beacon.csv_export import csv_lines
from beacon.exceptions import NotFound, ServiceError
from deliveries.models import Delivery
from profiles.models import Profile

# Erased people are gone from Profile altogether, so every profile is a candidate. Quarantined and
# denylisted addresses stay members, as they stay members of lists: a segment says who someone is and
# what they did; whether an address may be written to is analysis's decision, which excludes them with
# their reason in the delivery summary.


def segment_list() -> QuerySet[Segment]:
    return Segment.objects.order_by("name")


def segment_choices() -> list[tuple[int, str]]:
    return list(Segment.objects.order_by("name").values_list("pk", "name"))


def segment_get(*, segment_id: int) -> Segment:
    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        raise NotFound("No such segment.")
    return segment


def rule_profiles(*, rule: dict, now: datetime | None = None) -> QuerySet[Profile]:
    """The profiles a validated rule matches at `now` (default: now), by id."""
    return Profile.objects.filter(rule_condition(rule, now=now or timezone.now())).order_by("id")


def rule_preview(*, rule) -> tuple[dict, int]:
    """A rule not saved: validated (a RuleError otherwise), and how many profiles it matches now."""
    valid = rule_validate(rule)
    return valid, rule_profiles(rule=valid).order_by().count()


def segment_profiles(*, segment: Segment) -> QuerySet[Profile]:
    return rule_profiles(rule=segment.rule)


def segment_count(*, segment: Segment) -> int:
    return rule_profiles(rule=segment.rule).order_by().count()


def segment_conditions(segment_ids: list[int]) -> dict[int, Q]:
    """Each segment's condition on Profile, for a delivery's analysis (handed to deliveries at start-up).
    A segment that no longer exists is a ServiceError naming it: the analysis stops, saying why."""
    segments = {segment.pk: segment for segment in Segment.objects.filter(pk__in=segment_ids)}
    missing = [str(pk) for pk in segment_ids if pk not in segments]
    if missing:
        raise ServiceError(
            f"The audience names segments that no longer exist: {', '.join(missing)}.",
            code="unknown_segment", fields={"segments": [f"Unknown segment ids: {', '.join(missing)}."]},
        )
    now = timezone.now()
    return {pk: rule_condition(segments[pk].rule, now=now) for pk in segment_ids}


CSV_HEADER = ("id", "email", "first_name", "last_name", "email_status")


def report_audience_csv(*, delivery_id: int, reaction: str, url_label: str = "") -> tuple[Iterator[str], str]:
    """A delivery report's audience (`audiences.rules.report_rule`) as CSV lines to stream, and a file name."""
    if not Delivery.objects.filter(pk=delivery_id).exists():
        raise NotFound("No such delivery.")
    rule = rule_validate(report_rule(delivery_id=delivery_id, reaction=reaction, url_label=url_label))
    rows = rule_profiles(rule=rule).values_list(*CSV_HEADER).iterator(chunk_size=2000)
    return csv_lines(CSV_HEADER, rows), f"delivery-{delivery_id}-{reaction}.csv"
