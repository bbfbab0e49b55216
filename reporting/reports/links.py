"""Clicks per link (by URL, label or category), click streams, and the hot clicks of the HTML links."""
from collections import Counter

from django.core.exceptions import ValidationError
from django.db.models import Sum

from deliveries.models import Delivery, TrackedUrl
from reporting.models import ClickStreamRollup, LinkKind, LinkRollup
from reporting.percentages import percent
from reporting.reports.params import parse_choice, parse_day

DELETED_LINK = "(deleted link)"


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
    group_by = parse_choice(params, "group_by", LinkKind.values, LinkKind.URL)
    first_day, last_day = parse_day(params, "from"), parse_day(params, "to")
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
