"""Report queries: every report of a delivery, read from the rollups only (never a scan of raw events).

One module per family of reports; `report_get` here is the entry point, by report name. Each `report_*`
function returns plain data (what the API answers as JSON); `tables.report_table` turns it into the rows
of its CSV download. `humans_only=True` (the default everywhere) leaves machine events out.

Formulas (Adobe Campaign's "Tracking indicators"; percentages are of successful messages):

- distinct opens: recipients who opened (a counted click implies an open), extrapolated for text-only
  messages, which carry no open pixel: measured × to_deliver / (to_deliver − text messages);
- raw reactivity: recipients who clicked / recipients who opened (measured), in %;
- estimated reactivity: recipients who clicked / estimated distinct opens (with the text extrapolation),
  in %;
- estimated forwards: persons who clicked − recipients who clicked (never below 0), where persons are
  distinct browsers (cookie id), a click without one counting its recipient as one person.
"""
from beacon.exceptions import NotFound
from reporting.freshness import reports_as_of
from reporting.reports.deliverability import report_bounces, report_throughput
from reporting.reports.indicators import report_indicators, report_summary
from reporting.reports.links import report_hot_clicks, report_urls
from reporting.reports.opens import report_opens_breakdown
from reporting.reports.time_series import report_statistics
from reporting.selectors import delivery_get

REPORT_NAMES = (
    "summary", "indicators", "statistics", "urls", "hot-clicks", "opens-breakdown", "bounces", "throughput",
)

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
REPORTS_WITH_PARAMS = {"statistics", "urls", "bounces"}


def report_get(*, delivery_id: int, name: str, humans_only: bool = True, params: dict | None = None) -> dict:
    """One report by name, with `as_of`, the time of the consolidation run it reflects; unknown delivery or
    report → NotFound, bad parameters → ValidationError."""
    if name not in REPORTS:
        raise NotFound(f"No report named {name!r}; reports: {', '.join(REPORT_NAMES)}.")
    delivery = delivery_get(delivery_id=delivery_id)
    as_of = reports_as_of()
    extra = {"params": params or {}} if name in REPORTS_WITH_PARAMS else {}
    data = REPORTS[name](delivery=delivery, humans_only=humans_only, **extra)
    meta = {"report": name, "delivery_id": delivery.pk, "machine": "exclude" if humans_only else "include", "as_of": as_of}
    return meta | data
