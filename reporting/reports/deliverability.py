"""Bounces (failed and excluded messages by type, reason and domain, and failures over time) and sending
throughput, read from the delivery log's statistics (`reporting.statistics`), which count a bounce that
came back after sending as they count one at sending."""
import datetime as dt
from collections import Counter, defaultdict

from deliveries.models import Delivery, FailureType, MessageStatus
from reporting.models import DomainMessageStats, FailureStats, FailureTimeStats, ThroughputStats
from reporting.percentages import percent
from reporting.reports.params import parse_choice

FAILURE_GRANULARITIES = ("hour", "day")
# The report's tables; its CSV holds the one `table` names.
FAILURE_TABLES = ("reason", "domain", "time")
FAILURE_SERIES_TYPES = (FailureType.HARD, FailureType.SOFT, FailureType.IGNORED)


def _failures_over_time(delivery: Delivery, granularity: str) -> list[dict]:
    """Failed messages per hour or day (UTC) of their failure, by type."""
    series: dict[dt.datetime, Counter] = defaultdict(Counter)
    for row in FailureTimeStats.objects.filter(delivery_id=delivery.pk).values("hour", "failure_type", "messages"):
        start = row["hour"].astimezone(dt.UTC)
        if granularity == "day":
            start = start.replace(hour=0)
        series[start][row["failure_type"]] += row["messages"]
    return [
        {"start": start, **{str(kind): counts[kind] for kind in FAILURE_SERIES_TYPES}, "total": sum(counts.values())}
        for start, counts in sorted(series.items())
    ]


def report_bounces(*, delivery: Delivery, humans_only: bool = True, params: dict | None = None) -> dict:
    """Failed and excluded messages by type, reason and domain, and failures per hour or day
    (`granularity`); hard and soft bounce rates are bounces (failed messages of that type) as a share of
    processed messages (sent or failed), both counted from the delivery log. `table` picks the CSV's table."""
    granularity = parse_choice(params or {}, "granularity", FAILURE_GRANULARITIES, "hour")
    table = parse_choice(params or {}, "table", FAILURE_TABLES, "reason")
    rows = list(
        FailureStats.objects.filter(delivery_id=delivery.pk).values(
            "status", "failure_type", "failure_reason", "domain", "messages"
        )
    )
    total = sum(row["messages"] for row in rows)
    by_type, by_reason, by_domain = Counter(), Counter(), defaultdict(Counter)
    bounces = Counter()
    for row in rows:
        by_type[row["failure_type"]] += row["messages"]
        by_reason[(row["failure_type"], row["failure_reason"])] += row["messages"]
        by_domain[row["domain"]][row["failure_type"] or "other"] += row["messages"]
        by_domain[row["domain"]]["messages"] += row["messages"]
        if row["status"] == MessageStatus.FAILED:
            bounces[row["failure_type"]] += row["messages"]
    processed = sum(
        row["success"] + row["errors"]
        for row in DomainMessageStats.objects.filter(delivery_id=delivery.pk).values("success", "errors")
    )
    return {
        "granularity": granularity,
        "table": table,
        "errors": total,
        "processed": processed,
        "hard_bounces": bounces[FailureType.HARD],
        "soft_bounces": bounces[FailureType.SOFT],
        "hard_bounce_rate": percent(bounces[FailureType.HARD], processed),
        "soft_bounce_rate": percent(bounces[FailureType.SOFT], processed),
        "by_type": [
            {"failure_type": name, "messages": count, "share": percent(count, total)}
            for name, count in sorted(by_type.items(), key=lambda item: (-item[1], item[0]))
        ],
        "by_reason": [
            {"failure_type": kind, "failure_reason": reason, "messages": count, "share": percent(count, total)}
            for (kind, reason), count in sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))
        ],
        "by_domain": [
            {"domain": domain, "messages": counts["messages"], "hard": counts[FailureType.HARD],
             "soft": counts[FailureType.SOFT], "ignored": counts[FailureType.IGNORED]}
            for domain, counts in sorted(by_domain.items(), key=lambda item: (-item[1]["messages"], item[0]))
        ],
        "series": _failures_over_time(delivery, granularity),
    }


def report_throughput(*, delivery: Delivery, humans_only: bool = True) -> dict:
    """Messages processed per hour of sending, success vs error."""
    hours = [
        {"hour": row["hour"], "success": row["success"], "errors": row["errors"], "total": row["success"] + row["errors"]}
        for row in ThroughputStats.objects.filter(delivery_id=delivery.pk).order_by("hour").values("hour", "success", "errors")
    ]
    totals = [hour["total"] for hour in hours]
    return {
        "hours": hours,
        "peak_per_hour": max(totals, default=0),
        "average_per_hour": round(sum(totals) / len(totals), 1) if totals else 0,
        "success": sum(hour["success"] for hour in hours),
        "errors": sum(hour["errors"] for hour in hours),
    }
