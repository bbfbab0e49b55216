"""Report queries: every report of a delivery, read from the rollups only (never a scan of raw events).

Each `report_*` function returns plain data (what the API answers as JSON); `report_table` turns it into
the rows of its CSV download. `humans_only=True` (the default everywhere) leaves machine events out.

Formulas (Adobe Campaign's "Tracking indicators"; percentages are of successful messages):

- distinct opens: recipients who opened (a counted click implies an open), extrapolated for text-only
  messages, which carry no open pixel: measured × to_deliver / (to_deliver − text messages);
- raw reactivity: recipients who clicked / recipients who opened (measured), in %;
- estimated reactivity: recipients who clicked / estimated distinct opens (with the text extrapolation),
  in %;
- estimated forwards: persons who clicked − recipients who clicked (never below 0), where persons are
  distinct browsers (cookie id), a click without one counting its recipient as one person.
"""
import datetime as dt
from collections import Counter, defaultdict

from django.core.exceptions import ValidationError
from django.db.models import QuerySet, Sum

from beacon.exceptions import NotFound
from deliveries.models import Delivery, DeliveryAuditEntry, FailureType, Message, MessageStatus, TrackedUrl
from reporting.models import (
    ClickStreamRollup,
    DeliveryReportState,
    DeliveryRollup,
    DomainMessageStats,
    DomainRollup,
    FailureStats,
    LinkKind,
    LinkRollup,
    ThroughputStats,
    TimeBucketRollup,
    UserAgentRollup,
)
from tracking.models import DeviceType, TrackingEvent, UserAgent

REPORT_NAMES = (
    "summary", "indicators", "statistics", "urls", "hot-clicks", "opens-breakdown", "bounces", "throughput",
)
GRANULARITIES = {"half-hour": dt.timedelta(minutes=30), "hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}
TIME_TO_PERCENTS = (25, 50, 75, 90, 100)
MOBILE_DEVICES = (DeviceType.MOBILE, DeviceType.TABLET)
SERIES_COUNTERS = ("opens", "distinct_opens", "clicks", "distinct_clicks")
HALF_HOUR = dt.timedelta(minutes=30)
EVENT_COUNTERS = ("opens", "distinct_opens", "clicks", "distinct_clicks", "persons", "opt_outs", "mirror_page_views")
DELETED_LINK = "(deleted link)"
UNKNOWN = "Unknown"


def percent(part: float, whole: float) -> float | None:
    """`part` as a percentage of `whole`, to two decimals; None when `whole` is 0."""
    return round(100 * part / whole, 2) if whole else None


def delivery_get(*, delivery_id: int) -> Delivery:
    delivery = Delivery.objects.filter(pk=delivery_id).first()
    if delivery is None:
        raise NotFound("No such delivery.")
    return delivery


def _event_counts(model, *, humans_only: bool, **filters) -> dict:
    row = model.objects.filter(humans_only=humans_only, **filters).values(*EVENT_COUNTERS).first()
    return row or dict.fromkeys(EVENT_COUNTERS, 0)


def indicator_figures(*, to_deliver: int, text_messages: int, success: int, counts: dict) -> dict:
    """The tracking indicators from message figures and event rollup counters (see module docstring)."""
    measured_opens = counts["distinct_opens"]
    html_messages = to_deliver - text_messages
    if text_messages and html_messages > 0:
        distinct_opens = int(measured_opens * to_deliver / html_messages + 0.5)
    else:
        distinct_opens = measured_opens
    distinct_clicks = counts["distinct_clicks"]
    figures = {
        "to_deliver": to_deliver,
        "success": success,
        "distinct_opens": distinct_opens,
        "measured_distinct_opens": measured_opens,
        "total_opens": counts["opens"],
        "distinct_clicks": distinct_clicks,
        "distinct_click_persons": counts["persons"],
        "total_clicks": counts["clicks"],
        "estimated_forwards": max(counts["persons"] - distinct_clicks, 0),
        "raw_reactivity": percent(distinct_clicks, measured_opens),
        "estimated_reactivity": percent(distinct_clicks, distinct_opens),
        "opt_outs": counts["opt_outs"],
        "mirror_page_views": counts["mirror_page_views"],
    }
    figures["percentages"] = {"success": percent(success, to_deliver)} | {
        name: percent(figures[name], success)
        for name in (
            "distinct_opens", "total_opens", "distinct_clicks", "distinct_click_persons", "total_clicks",
            "estimated_forwards", "opt_outs", "mirror_page_views",
        )
    }
    return figures


def report_summary(*, delivery: Delivery, humans_only: bool = True) -> dict:
    state = DeliveryReportState.objects.filter(delivery_id=delivery.pk).first()
    excluded = sorted((delivery.excluded_by_cause or {}).items(), key=lambda item: (-item[1], item[0]))
    return {
        "delivery": {"id": delivery.pk, "label": delivery.label, "status": delivery.status},
        "initial_population": delivery.initial_population,
        "excluded": sum(count for _, count in excluded),
        "excluded_by_cause": [{"cause": cause, "recipients": count} for cause, count in excluded],
        "to_deliver": delivery.to_deliver,
        "processed": delivery.processed,
        "success": delivery.success,
        "errors": delivery.errors,
        "new_quarantines": state.new_quarantines if state else 0,
        "percentages": {
            "processed": percent(delivery.processed, delivery.to_deliver),
            "success": percent(delivery.success, delivery.to_deliver),
            "errors": percent(delivery.errors, delivery.to_deliver),
        },
    }


def report_indicators(*, delivery: Delivery, humans_only: bool = True) -> dict:
    state = DeliveryReportState.objects.filter(delivery_id=delivery.pk).first()
    figures = indicator_figures(
        to_deliver=delivery.to_deliver,
        text_messages=state.text_messages if state else 0,
        success=delivery.success,
        counts=_event_counts(DeliveryRollup, humans_only=humans_only, delivery_id=delivery.pk),
    )
    message_stats = {
        row["domain"]: row
        for row in DomainMessageStats.objects.filter(delivery_id=delivery.pk).values(
            "domain", "to_deliver", "text_messages", "success"
        )
    }
    event_stats = {
        row["domain"]: row
        for row in DomainRollup.objects.filter(delivery_id=delivery.pk, humans_only=humans_only).values(
            "domain", *EVENT_COUNTERS
        )
    }
    by_domain = []
    for domain in message_stats.keys() | event_stats.keys():
        messages = message_stats.get(domain, {})
        by_domain.append(
            {"domain": domain}
            | indicator_figures(
                to_deliver=messages.get("to_deliver", 0),
                text_messages=messages.get("text_messages", 0),
                success=messages.get("success", 0),
                counts=event_stats.get(domain) or dict.fromkeys(EVENT_COUNTERS, 0),
            )
        )
    by_domain.sort(key=lambda row: (-row["to_deliver"], -row["total_opens"], row["domain"]))
    return figures | {"by_domain": by_domain}


def _parse_choice(params: dict, name: str, choices, default: str) -> str:
    value = params.get(name) or default
    if value not in choices:
        raise ValidationError({name: [f"Must be one of: {', '.join(choices)}."]})
    return value


def _parse_day(params: dict, name: str) -> dt.date | None:
    value = params.get(name)
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationError({name: ["Enter a date as YYYY-MM-DD."]}) from None


def _bucket_of(start: dt.datetime, granularity: str) -> dt.datetime:
    if granularity == "hour":
        return start.replace(minute=0)
    if granularity == "day":
        return start.replace(hour=0, minute=0)
    return start


def report_statistics(*, delivery: Delivery, humans_only: bool = True, params: dict | None = None) -> dict:
    """Opens and clicks over time; the time to reach X% of all opens and clicks, counted from the start
    of sending (or the first event) to the end of the half hour in which the share was reached."""
    granularity = _parse_choice(params or {}, "granularity", GRANULARITIES, "hour")
    rows = list(
        TimeBucketRollup.objects.filter(delivery_id=delivery.pk, humans_only=humans_only)
        .order_by("bucket_start")
        .values("bucket_start", *SERIES_COUNTERS)
    )
    series: dict[dt.datetime, Counter] = defaultdict(Counter)
    for row in rows:
        start = _bucket_of(row["bucket_start"].astimezone(dt.UTC), granularity)
        series[start].update({name: row[name] for name in SERIES_COUNTERS})
    started_at = delivery.sending_started_at or (rows[0]["bucket_start"] if rows else None)
    totals = {name: sum(row[name] for row in rows) for name in SERIES_COUNTERS}
    time_to = [
        {"percent": target}
        | {
            f"{name}_seconds": _seconds_to_reach(rows, name, totals[name] * target / 100, started_at)
            for name in ("opens", "clicks")
        }
        for target in TIME_TO_PERCENTS
    ]
    return {
        "granularity": granularity,
        "started_at": started_at,
        "totals": totals,
        "series": [{"start": start, **{name: counts[name] for name in SERIES_COUNTERS}} for start, counts in sorted(series.items())],
        "time_to": time_to,
    }


def _seconds_to_reach(rows: list[dict], name: str, target: float, started_at: dt.datetime | None) -> int | None:
    if not target or started_at is None:
        return None
    cumulated = 0
    for row in rows:
        cumulated += row[name]
        if cumulated >= target:
            return max(int((row["bucket_start"] + HALF_HOUR - started_at).total_seconds()), 0)
    return None


def _link_names(kind: str, keys) -> dict[str, dict]:
    """Display data of link keys; a URL key names a tracked URL id, which may have been deleted."""
    if kind != LinkKind.URL:
        empty = DELETED_LINK if kind == LinkKind.LABEL else "(no category)"
        return {key: {"name": key or empty} for key in keys}
    urls = {
        str(url["id"]): url
        for url in TrackedUrl.objects.filter(id__in=[int(key) for key in keys]).values(
            "id", "url", "label", "category", "position"
        )
    }
    return {
        key: {
            "name": (urls[key]["label"] or urls[key]["url"]) if key in urls else DELETED_LINK,
            "url": urls[key]["url"] if key in urls else "",
            "label": urls[key]["label"] if key in urls else "",
            "category": urls[key]["category"] if key in urls else "",
        }
        for key in keys
    }


def report_urls(*, delivery: Delivery, humans_only: bool = True, params: dict | None = None) -> dict:
    """Clicks per link grouped by URL, label or category over a period (days, inclusive), clicks per
    day, and click streams: after a first click on a link, which link the recipient clicked next."""
    params = params or {}
    group_by = _parse_choice(params, "group_by", LinkKind.values, LinkKind.URL)
    first_day, last_day = _parse_day(params, "from"), _parse_day(params, "to")
    if first_day and last_day and first_day > last_day:
        raise ValidationError({"to": ["Must not be before 'from'."]})
    period = {}
    if first_day:
        period["day__gte"] = first_day
    if last_day:
        period["day__lte"] = last_day
    links = list(
        LinkRollup.objects.filter(delivery_id=delivery.pk, humans_only=humans_only, kind=group_by, **period)
        .values("key")
        .annotate(clicks=Sum("clicks"), distinct_clicks=Sum("distinct_clicks"))
        .order_by()
    )
    total_clicks = sum(link["clicks"] for link in links)
    names = _link_names(group_by, [link["key"] for link in links])
    rows = [
        {"key": link["key"], **names[link["key"]], "clicks": link["clicks"], "distinct_clicks": link["distinct_clicks"],
         "share": percent(link["clicks"], total_clicks)}
        for link in links
    ]
    rows.sort(key=lambda row: (-row["clicks"], row["name"], row["key"]))
    per_day = (
        LinkRollup.objects.filter(delivery_id=delivery.pk, humans_only=humans_only, kind=LinkKind.URL, **period)
        .values("day")
        .annotate(clicks=Sum("clicks"), distinct_clicks=Sum("distinct_clicks"))
        .order_by("day")
    )
    streams = list(
        ClickStreamRollup.objects.filter(delivery_id=delivery.pk, humans_only=humans_only, recipients__gt=0)
        .values("from_url_id", "to_url_id", "recipients")
    )
    leaving = Counter()
    for stream in streams:
        leaving[stream["from_url_id"]] += stream["recipients"]
    stream_names = _link_names(
        LinkKind.URL, {str(s["from_url_id"]) for s in streams} | {str(s["to_url_id"]) for s in streams}
    )
    click_streams = [
        {
            "from_url_id": stream["from_url_id"],
            "from": stream_names[str(stream["from_url_id"])]["name"],
            "to_url_id": stream["to_url_id"],
            "to": stream_names[str(stream["to_url_id"])]["name"],
            "recipients": stream["recipients"],
            "share": percent(stream["recipients"], leaving[stream["from_url_id"]]),
        }
        for stream in streams
    ]
    click_streams.sort(key=lambda row: (-row["recipients"], row["from"], row["to"], row["from_url_id"], row["to_url_id"]))
    return {
        "group_by": group_by,
        "from": first_day,
        "to": last_day,
        "total_clicks": total_clicks,
        "links": rows,
        "clicks_per_day": list(per_day),
        "click_streams": click_streams,
    }


def report_hot_clicks(*, delivery: Delivery, humans_only: bool = True) -> dict:
    """The HTML links in content order with their share of all clicks on the delivery's links."""
    clicks = dict(
        LinkRollup.objects.filter(delivery_id=delivery.pk, humans_only=humans_only, kind=LinkKind.URL)
        .values("key")
        .annotate(clicks=Sum("clicks"))
        .values_list("key", "clicks")
    )
    total_clicks = sum(clicks.values())
    links = [
        {
            "tracked_url_id": url.pk,
            "position": url.position,
            "url": url.url,
            "label": url.label,
            "clicks": clicks.get(str(url.pk), 0),
            "share": percent(clicks.get(str(url.pk), 0), total_clicks),
        }
        for url in TrackedUrl.objects.filter(delivery_id=delivery.pk, in_html=True, position__isnull=False).order_by(
            "position", "id"
        )
    ]
    return {"total_clicks": total_clicks, "links": links}


def report_opens_breakdown(*, delivery: Delivery, humans_only: bool = True) -> dict:
    """Opens by operating system, device type and browser; for all devices and for mobile ones
    (phones and tablets). User agents not parsed yet count as Unknown."""
    opens = dict(
        UserAgentRollup.objects.filter(delivery_id=delivery.pk, humans_only=humans_only).values_list(
            "user_agent_id", "opens"
        )
    )
    facets = {
        pk: (os_family or UNKNOWN, device_type or "unknown", browser_family or UNKNOWN)
        for pk, os_family, device_type, browser_family in UserAgent.objects.filter(id__in=list(opens)).values_list(
            "id", "os_family", "device_type", "browser_family"
        )
    }
    breakdown = {scope: {"os": Counter(), "device": Counter(), "browser": Counter()} for scope in ("all", "mobile")}
    for user_agent_id, count in opens.items():
        os_family, device_type, browser_family = facets.get(user_agent_id, (UNKNOWN, "unknown", UNKNOWN))
        scopes = ("all", "mobile") if device_type in MOBILE_DEVICES else ("all",)
        for scope in scopes:
            breakdown[scope]["os"][os_family] += count
            breakdown[scope]["device"][device_type] += count
            breakdown[scope]["browser"][browser_family] += count

    def table(counter: Counter) -> list[dict]:
        total = sum(counter.values())
        return [
            {"name": name, "opens": count, "share": percent(count, total)}
            for name, count in sorted(counter.items(), key=lambda item: (-item[1], item[0]))
        ]

    return {
        scope: {"total_opens": sum(facets_["device"].values())} | {facet: table(c) for facet, c in facets_.items()}
        for scope, facets_ in breakdown.items()
    }


def report_bounces(*, delivery: Delivery, humans_only: bool = True) -> dict:
    """Failed and excluded messages by type, reason and domain; hard and soft bounce rates are bounces
    (failed messages of that type) as a share of processed messages (sent or failed)."""
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
    processed = delivery.success + delivery.errors
    return {
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


REPORTS = {
    "summary": report_summary,
    "indicators": report_indicators,
    "statistics": report_statistics,
    "urls": report_urls,
    "hot-clicks": report_hot_clicks,
    "opens-breakdown": report_opens_breakdown,
    "bounces": report_bounces,
    "throughput": report_throughput,
}
REPORTS_WITH_PARAMS = {"statistics", "urls"}


def report_get(*, delivery_id: int, name: str, humans_only: bool = True, params: dict | None = None) -> dict:
    """One report by name; unknown delivery or report → NotFound, bad parameters → ValidationError."""
    if name not in REPORTS:
        raise NotFound(f"No report named {name!r}; reports: {', '.join(REPORT_NAMES)}.")
    delivery = delivery_get(delivery_id=delivery_id)
    extra = {"params": params or {}} if name in REPORTS_WITH_PARAMS else {}
    data = REPORTS[name](delivery=delivery, humans_only=humans_only, **extra)
    return {"report": name, "delivery_id": delivery.pk, "machine": "exclude" if humans_only else "include"} | data


INDICATOR_COLUMNS = (
    "to_deliver", "success", "distinct_opens", "total_opens", "distinct_clicks", "distinct_click_persons",
    "total_clicks", "estimated_forwards", "raw_reactivity", "estimated_reactivity", "opt_outs", "mirror_page_views",
)


def report_table(name: str, data: dict) -> tuple[list[str], list[list]]:
    """The CSV table of a report: a header and rows."""
    if name == "summary":
        rows = [[key, data[key]] for key in ("initial_population", "excluded", "to_deliver", "processed", "success", "errors", "new_quarantines")]
        rows += [[f"excluded: {row['cause']}", row["recipients"]] for row in data["excluded_by_cause"]]
        return ["indicator", "value"], rows
    if name == "indicators":
        rows = [["(all)", *(data[c] for c in INDICATOR_COLUMNS)]]
        rows += [[row["domain"], *(row[c] for c in INDICATOR_COLUMNS)] for row in data["by_domain"]]
        return ["domain", *INDICATOR_COLUMNS], rows
    if name == "statistics":
        return ["start", *SERIES_COUNTERS], [[row["start"].isoformat(), *(row[c] for c in SERIES_COUNTERS)] for row in data["series"]]
    if name == "urls":
        return (
            [data["group_by"], "url", "clicks", "distinct_clicks", "share"],
            [[row["name"], row.get("url", ""), row["clicks"], row["distinct_clicks"], row["share"]] for row in data["links"]],
        )
    if name == "hot-clicks":
        columns = ["position", "url", "label", "clicks", "share"]
        return columns, [[row[c] for c in columns] for row in data["links"]]
    if name == "opens-breakdown":
        rows = [
            [scope, facet, row["name"], row["opens"], row["share"]]
            for scope in ("all", "mobile")
            for facet in ("os", "device", "browser")
            for row in data[scope][facet]
        ]
        return ["devices", "facet", "name", "opens", "share"], rows
    if name == "bounces":
        columns = ["failure_type", "failure_reason", "messages", "share"]
        return columns, [[row[c] for c in columns] for row in data["by_reason"]]
    columns = ["hour", "success", "errors", "total"]
    return columns, [[row["hour"].isoformat(), row["success"], row["errors"], row["total"]] for row in data["hours"]]


# --- Pages ---------------------------------------------------------------------------------------

def deliveries_list() -> list[Delivery]:
    return list(Delivery.objects.order_by("-created_at", "-id")[:200])


def delivery_progress(*, delivery: Delivery) -> dict:
    return {
        "id": delivery.pk,
        "status": delivery.status,
        "status_display": delivery.get_status_display(),
        "to_deliver": delivery.to_deliver,
        "processed": delivery.processed,
        "success": delivery.success,
        "errors": delivery.errors,
        "percent": percent(delivery.processed, delivery.to_deliver) or 0,
    }


def delivery_messages(*, delivery_id: int, status: str = "") -> QuerySet[Message]:
    messages = Message.objects.filter(delivery_id=delivery_id).order_by("id")
    return messages.filter(status=status) if status else messages


def delivery_events(*, delivery_id: int, event_type: str = "") -> QuerySet[TrackingEvent]:
    events = TrackingEvent.objects.filter(delivery_id=delivery_id).order_by("-logged_at", "-id")
    return events.filter(type=event_type) if event_type else events


def delivery_audit(*, delivery_id: int) -> QuerySet[DeliveryAuditEntry]:
    return DeliveryAuditEntry.objects.filter(delivery_id=delivery_id).select_related("actor").order_by("-at", "-id")
