"""Reports across deliveries (`/reports/`, `/api/reports/<name>/`): the deliveries of a period side by side
with their indicators, their opens by operating system, browser and device, and opt-outs and bounces over
time. Rollups only, in a constant number of queries whatever the number of deliveries; days and weeks are
UTC, as every rollup's time.

- The deliveries of a period are those whose sending started within it (days, inclusive).
- Side by side, a delivery's bounces are its failed messages of type hard or soft (as the delivery's
  bounces report counts them), its bounce rate their share of its processed messages.
- Over time, each figure is counted in the period's buckets whatever the delivery: an opt-out at its event's
  half hour (`TimeBucketRollup`), a failed message at the hour it was sent (`ThroughputStats`, which holds
  failures by hour but not by type: a bounce at sending, an asynchronous bounce at its message's sending
  hour, or another sending error). The failed rate of a bucket is its failed messages as a share of the
  messages processed in it. Opt-outs consolidated before migration 0005 are in no half hour until their
  delivery is recomputed.
"""
import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from beacon.exceptions import NotFound
from deliveries.models import Delivery
from reporting.freshness import reports_as_of
from reporting.models import (
    DeliveryReportState,
    DeliveryRollup,
    DomainMessageStats,
    ThroughputStats,
    TimeBucketRollup,
    UserAgentRollup,
)
from reporting.percentages import percent
from reporting.reports.indicators import EVENT_COUNTERS, indicator_figures
from reporting.reports.opens import opens_by_facet
from reporting.reports.params import parse_choice
from tracking.models import UserAgent

DEFAULT_PERIOD_DAYS = 30
# A year and a day: every day of a leap year, and the series stay a few hundred points.
MAX_PERIOD_DAYS = 366
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
BUCKETS = ("day", "week")
# The columns the deliveries can be sorted by; "-" in front sorts in decreasing order.
SORTS = (
    "label", "sent_at", "to_deliver", "success", "distinct_opens", "total_opens", "distinct_clicks", "total_clicks",
    "raw_reactivity", "opt_outs", "bounces", "bounce_rate",
)
DEFAULT_SORT = "-sent_at"
# The figures of the period's totals that are sums of the deliveries'.
SUMMED = (
    "to_deliver", "success", "processed", "distinct_opens", "measured_distinct_opens", "total_opens",
    "distinct_clicks", "total_clicks", "opt_outs", "hard_bounces", "soft_bounces",
)
DELIVERY_COLUMNS = (
    "to_deliver", "success", "distinct_opens", "total_opens", "distinct_clicks", "total_clicks", "raw_reactivity",
    "opt_outs", "hard_bounces", "soft_bounces", "bounces", "bounce_rate",
)


@dataclass(frozen=True)
class Period:
    """Days, both included."""

    first_day: dt.date
    last_day: dt.date

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.first_day, dt.time.min, tzinfo=dt.UTC)

    @property
    def end(self) -> dt.datetime:
        """The last instant of the last day (no day after it: 9999-12-31 has none)."""
        return dt.datetime.combine(self.last_day, dt.time.max, tzinfo=dt.UTC)


def _day(params, name: str) -> dt.date | None:
    value = params.get(name)
    if not value:
        return None
    if not isinstance(value, str) or not DATE.fullmatch(value):
        raise ValidationError({name: ["Enter a date as YYYY-MM-DD."]})
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationError({name: ["Enter a real date as YYYY-MM-DD."]}) from None


def period_parse(params, *, today: dt.date) -> Period:
    """The period of `from` and `to` (YYYY-MM-DD); without them the last 30 days to `today`, without one
    of them the 30 days from or to the other. ValidationError: a bad date, `from` after `to`, or a period
    past `MAX_PERIOD_DAYS`."""
    first_day, last_day = _day(params, "from"), _day(params, "to")
    if last_day is None:
        last_day = today if first_day is None else _days_after(first_day, DEFAULT_PERIOD_DAYS - 1)
    if first_day is None:
        first_day = last_day - dt.timedelta(days=min(DEFAULT_PERIOD_DAYS - 1, (last_day - dt.date.min).days))
    if first_day > last_day:
        raise ValidationError({"to": ["Must not be before 'from'."]})
    if (last_day - first_day).days + 1 > MAX_PERIOD_DAYS:
        raise ValidationError({"to": [f"A period is at most {MAX_PERIOD_DAYS} days."]})
    return Period(first_day, last_day)


def _days_after(day: dt.date, days: int) -> dt.date:
    return day + dt.timedelta(days=min(days, (dt.date.max - day).days))


def sort_parse(params) -> str:
    value = params.get("sort") or DEFAULT_SORT
    if value.removeprefix("-") not in SORTS:
        raise ValidationError({"sort": [f"Must be one of: {', '.join(SORTS)} (with '-' in front: decreasing)."]})
    return value


def deliveries_of(period: Period) -> QuerySet:
    """The deliveries whose sending started within the period."""
    return Delivery.objects.filter(sending_started_at__gte=period.start, sending_started_at__lte=period.end)


def report_deliveries(*, period: Period, humans_only: bool = True, sort: str = DEFAULT_SORT) -> dict:
    """The deliveries of the period side by side with their tracking indicators (formulas of the delivery
    reports: distinct opens extrapolated for text messages, percentages of successful messages), their
    bounces (failed messages of type hard or soft) and bounce rate (of processed messages), and the period's
    totals. Four queries."""
    in_period = deliveries_of(period)
    deliveries = list(
        in_period.order_by("-sending_started_at", "-id").values(
            "id", "label", "status", "sending_started_at", "to_deliver", "success", "errors"
        )
    )
    ids = in_period.values("id")
    counts = {
        row["delivery_id"]: row
        for row in DeliveryRollup.objects.filter(delivery__in=ids, humans_only=humans_only).values(
            "delivery_id", *EVENT_COUNTERS
        )
    }
    text_messages = dict(
        DeliveryReportState.objects.filter(delivery__in=ids).values_list("delivery_id", "text_messages")
    )
    bounces = {
        row["delivery_id"]: row
        for row in DomainMessageStats.objects.filter(delivery__in=ids)
        .values("delivery_id")
        .annotate(hard=Sum("hard_bounces"), soft=Sum("soft_bounces"))
        .order_by()
    }
    rows = []
    for delivery in deliveries:
        figures = indicator_figures(
            to_deliver=delivery["to_deliver"],
            text_messages=text_messages.get(delivery["id"], 0),
            success=delivery["success"],
            counts=counts.get(delivery["id"]) or dict.fromkeys(EVENT_COUNTERS, 0),
        )
        failed = bounces.get(delivery["id"], {})
        rows.append(_delivery_row(
            {"id": delivery["id"], "label": delivery["label"], "status": delivery["status"],
             "sent_at": delivery["sending_started_at"]},
            figures,
            processed=delivery["success"] + delivery["errors"],
            hard_bounces=failed.get("hard") or 0,
            soft_bounces=failed.get("soft") or 0,
        ))
    return {"sort": sort, "deliveries": _sorted(rows, sort), "totals": _totals(rows)}


def _delivery_row(head: dict, figures: dict, *, processed: int, hard_bounces: int, soft_bounces: int) -> dict:
    bounces = hard_bounces + soft_bounces
    row = head | {name: figures[name] for name in DELIVERY_COLUMNS if name in figures} | {
        "measured_distinct_opens": figures["measured_distinct_opens"],
        "processed": processed,
        "hard_bounces": hard_bounces,
        "soft_bounces": soft_bounces,
        "bounces": bounces,
        "bounce_rate": percent(bounces, processed),
    }
    row["percentages"] = {
        "success": percent(row["success"], row["to_deliver"]),
        "distinct_opens": percent(row["distinct_opens"], row["success"]),
        "distinct_clicks": percent(row["distinct_clicks"], row["success"]),
        "opt_outs": percent(row["opt_outs"], row["success"]),
    }
    return row


def _totals(rows: list[dict]) -> dict:
    """The period's sums; its raw reactivity is all clicking recipients over all opening ones."""
    figures = {name: sum(row[name] for row in rows) for name in SUMMED}
    return {"deliveries": len(rows)} | _delivery_row(
        {},
        figures | {"raw_reactivity": percent(figures["distinct_clicks"], figures["measured_distinct_opens"])},
        processed=figures["processed"],
        hard_bounces=figures["hard_bounces"],
        soft_bounces=figures["soft_bounces"],
    )


def _sorted(rows: list[dict], sort: str) -> list[dict]:
    """Sorted by the column of `sort`, rows without a value (a rate of nothing) last either way; ties in
    the order the query gave (latest sent first)."""
    column, decreasing = sort.removeprefix("-"), sort.startswith("-")
    valued = [row for row in rows if row[column] is not None]
    key = (lambda row: row[column].casefold()) if column == "label" else (lambda row: row[column])
    valued.sort(key=key, reverse=decreasing)
    return valued + [row for row in rows if row[column] is None]


def report_opens_across(*, period: Period, humans_only: bool = True) -> dict:
    """Opens of the deliveries of the period by operating system, device type and browser, for all devices
    and for mobile ones, as the delivery report "Breakdown of opens" counts them. Two queries."""
    rollups = UserAgentRollup.objects.filter(delivery__in=deliveries_of(period).values("id"), humans_only=humans_only)
    opens = dict(
        rollups.values("user_agent_id").annotate(total=Sum("opens")).order_by().values_list("user_agent_id", "total")
    )
    return opens_by_facet(opens, UserAgent.objects.filter(id__in=rollups.values("user_agent_id")))


def bucket_of(day: dt.date, bucket: str) -> dt.date:
    """The first day of the bucket holding `day`: itself, or the Monday of its ISO week."""
    return day - dt.timedelta(days=day.weekday()) if bucket == "week" else day


def report_over_time(*, period: Period, humans_only: bool = True, bucket: str = "day") -> dict:
    """Opt-outs, messages processed, failed messages (bounces and other sending errors) and their rate per
    day or week of the period, every bucket listed (zeros included); a week is counted within the period
    only. Two queries."""
    # Summed per day in SQL: a year of half hours and hours would be thousands of rows to read in Python.
    opt_outs = Counter()
    for row in (
        TimeBucketRollup.objects.filter(
            humans_only=humans_only, bucket_start__gte=period.start, bucket_start__lte=period.end, opt_outs__gt=0
        )
        .values(day=TruncDate("bucket_start", tzinfo=dt.UTC))
        .annotate(total=Sum("opt_outs"))
        .order_by()
    ):
        opt_outs[bucket_of(row["day"], bucket)] += row["total"]
    success, errors = Counter(), Counter()
    for row in (
        ThroughputStats.objects.filter(hour__gte=period.start, hour__lte=period.end)
        .values(day=TruncDate("hour", tzinfo=dt.UTC))
        .annotate(success=Sum("success"), errors=Sum("errors"))
        .order_by()
    ):
        day = bucket_of(row["day"], bucket)
        success[day] += row["success"]
        errors[day] += row["errors"]
    series = []
    day, last = bucket_of(period.first_day, bucket), bucket_of(period.last_day, bucket)
    step = dt.timedelta(days=7 if bucket == "week" else 1)
    while True:
        processed = success[day] + errors[day]
        series.append({
            "start": day, "opt_outs": opt_outs[day], "processed": processed, "failed": errors[day],
            "failed_rate": percent(errors[day], processed),
        })
        if day >= last:
            break
        day += step
    return {
        "bucket": bucket,
        "series": series,
        "totals": {"opt_outs": sum(opt_outs.values()), "processed": sum(success.values()) + sum(errors.values()),
                   "failed": sum(errors.values())},
    }


ACROSS_REPORT_NAMES = ("deliveries", "opens-breakdown", "over-time")


def across_report_get(*, name: str, humans_only: bool = True, params=None, today: dt.date | None = None) -> dict:
    """One report across deliveries by name (`ACROSS_REPORT_NAMES`), with its period and `as_of`; bad
    parameters → ValidationError, an unknown name → NotFound."""
    if name not in ACROSS_REPORT_NAMES:
        raise NotFound(f"No report named {name!r}; reports across deliveries: {', '.join(ACROSS_REPORT_NAMES)}.")
    params = params or {}
    period = period_parse(params, today=today or timezone.now().astimezone(dt.UTC).date())
    if name == "deliveries":
        data = report_deliveries(period=period, humans_only=humans_only, sort=sort_parse(params))
    elif name == "opens-breakdown":
        data = report_opens_across(period=period, humans_only=humans_only)
    else:
        data = report_over_time(period=period, humans_only=humans_only, bucket=parse_choice(params, "bucket", BUCKETS, "day"))
    meta = {
        "report": name, "from": period.first_day, "to": period.last_day,
        "machine": "exclude" if humans_only else "include", "as_of": reports_as_of(),
    }
    return meta | data
