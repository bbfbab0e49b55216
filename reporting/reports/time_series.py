"""Opens and clicks over time, and the time to reach X% of them."""
import datetime as dt
from collections import Counter, defaultdict

from django.db.models import Q

from deliveries.models import Delivery
from reporting.models import TimeBucketRollup
from reporting.reports.params import parse_choice

GRANULARITIES = {"half-hour": dt.timedelta(minutes=30), "hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}
TIME_TO_PERCENTS = (25, 50, 75, 90, 100)
SERIES_COUNTERS = ("opens", "distinct_opens", "clicks", "distinct_clicks")
HALF_HOUR = dt.timedelta(minutes=30)


def _bucket_of(start: dt.datetime, granularity: str) -> dt.datetime:
    if granularity == "hour":
        return start.replace(minute=0)
    if granularity == "day":
        return start.replace(hour=0, minute=0)
    return start


def report_statistics(*, delivery: Delivery, humans_only: bool = True, params: dict | None = None) -> dict:
    """Opens and clicks over time; the time to reach X% of all opens and clicks, from the start of sending
    (or the first event).

    The rollups count events per half hour, so that time is known to within the half hour in which the
    share was reached: `<name>_seconds` is its end (the share was reached by then) and
    `<name>_seconds_min` its start (not before then; 0 when it is the half hour sending started in). A
    finer answer would need a scan of the raw events, which reports never make."""
    granularity = parse_choice(params or {}, "granularity", GRANULARITIES, "hour")
    rows = list(
        TimeBucketRollup.objects.filter(delivery_id=delivery.pk, humans_only=humans_only)
        # A half hour with opt-outs only is no point of this series.
        .filter(Q(opens__gt=0) | Q(clicks__gt=0))
        .order_by("bucket_start")
        .values("bucket_start", *SERIES_COUNTERS)
    )
    series: dict[dt.datetime, Counter] = defaultdict(Counter)
    for row in rows:
        start = _bucket_of(row["bucket_start"].astimezone(dt.UTC), granularity)
        series[start].update({name: row[name] for name in SERIES_COUNTERS})
    started_at = delivery.sending_started_at or (rows[0]["bucket_start"] if rows else None)
    totals = {name: sum(row[name] for row in rows) for name in SERIES_COUNTERS}
    time_to = []
    for target in TIME_TO_PERCENTS:
        row = {"percent": target}
        for name in ("opens", "clicks"):
            row[f"{name}_seconds_min"], row[f"{name}_seconds"] = _seconds_to_reach(
                rows, name, totals[name] * target / 100, started_at
            )
        time_to.append(row)
    return {
        "granularity": granularity,
        "started_at": started_at,
        "totals": totals,
        "series": [{"start": start, **{name: counts[name] for name in SERIES_COUNTERS}} for start, counts in sorted(series.items())],
        "time_to": time_to,
    }


def _seconds_to_reach(
    rows: list[dict], name: str, target: float, started_at: dt.datetime | None
) -> tuple[int | None, int | None]:
    """The start and the end, in seconds after `started_at`, of the half hour in which `target` was reached."""
    if not target or started_at is None:
        return None, None
    cumulated = 0
    for row in rows:
        cumulated += row[name]
        if cumulated >= target:
            start = row["bucket_start"] - started_at
            return max(int(start.total_seconds()), 0), max(int((start + HALF_HOUR).total_seconds()), 0)
    return None, None
