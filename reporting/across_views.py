"""The page of reports across deliveries (`/reports/`) and its CSV downloads: read by every role, as the
delivery reports are (READ_REPORTS: aggregates, no recipient's data)."""
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.decorators import action_required
from accounts.roles import READ_REPORTS
from beacon.csv_export import csv_text
from reporting import charts
from reporting.reports.across import ACROSS_REPORT_NAMES, BUCKETS, across_report_get
from reporting.reports.tables import across_report_table

# The fields of the period form, and how long a typed value is shown back with its error.
FORM_FIELDS = ("from", "to", "bucket", "sort")
SHOWN_BACK_CHARACTERS = 40
# (column, header, whether it first sorts in decreasing order)
DELIVERY_HEADERS = (
    ("label", "Delivery", False),
    ("sent_at", "Sent", True),
    ("to_deliver", "To deliver", True),
    ("success", "Success", True),
    ("distinct_opens", "Distinct opens", True),
    ("distinct_clicks", "Distinct clicks", True),
    ("total_clicks", "Total clicks", True),
    ("raw_reactivity", "Raw reactivity", True),
    ("opt_outs", "Opt-outs", True),
    ("bounces", "Bounces", True),
    ("bounce_rate", "Bounce rate", True),
)
BREAKDOWN_SCOPES = {"all": "All devices", "mobile": "Mobile devices (phones and tablets)"}
BREAKDOWN_FACETS = {"os": "Operating system", "device": "Device", "browser": "Browser"}


def _humans_only(request: HttpRequest) -> bool:
    return request.GET.get("machine") != "include"


def _reports(params: dict, humans_only: bool) -> dict:
    return {name: across_report_get(name=name, humans_only=humans_only, params=params) for name in ACROSS_REPORT_NAMES}


@action_required(READ_REPORTS)
def reports_page(request: HttpRequest) -> HttpResponse:
    """The three reports of one period. A bad field is shown as the form's error beside it, and the reports
    of the default period (with the fields that were right) are shown meanwhile."""
    humans_only = _humans_only(request)
    params = {name: request.GET.get(name, "") for name in FORM_FIELDS}
    errors = {}
    try:
        data = _reports(params, humans_only)
    except ValidationError as error:
        errors = error.message_dict
        kept = {name: value for name, value in params.items() if name not in errors}
        if "from" in errors or "to" in errors:
            kept.pop("from", None)
            kept.pop("to", None)
        try:
            data = _reports(kept, humans_only)
        except ValidationError:
            data = _reports({}, humans_only)
    deliveries, opens, over_time = data["deliveries"], data["opens-breakdown"], data["over-time"]
    return render(request, "reporting/reports.html", {
        "deliveries": deliveries,
        "over_time": over_time,
        "breakdown": [
            (title, opens[scope]["total_opens"], [(facet_title, opens[scope][facet]) for facet, facet_title in BREAKDOWN_FACETS.items()])
            for scope, title in BREAKDOWN_SCOPES.items()
        ],
        "headers": _sort_headers(request, deliveries["sort"]),
        "errors": errors,
        "typed": {name: value[:SHOWN_BACK_CHARACTERS] for name, value in params.items()},
        "buckets": BUCKETS,
        "humans_only": humans_only,
        "query": _query(request, drop=("machine",)),
        "csv_query": _query(request, drop=()),
        "charts": _charts(opens, over_time),
        "freshness": {"as_of": deliveries["as_of"]},
    })


def _query(request: HttpRequest, *, drop: tuple[str, ...], **replace) -> str:
    query = request.GET.copy()
    for name in drop:
        query.pop(name, None)
    for name, value in replace.items():
        query[name] = value
    return query.urlencode()


def _sort_headers(request: HttpRequest, sort: str) -> list[dict]:
    """Each column's header with the link that sorts by it (again: the other way) and its `aria-sort`."""
    current, decreasing = sort.removeprefix("-"), sort.startswith("-")
    headers = []
    for column, title, first_decreasing in DELIVERY_HEADERS:
        if column == current:
            next_sort = column if decreasing else f"-{column}"
            state = "descending" if decreasing else "ascending"
        else:
            next_sort = f"-{column}" if first_decreasing else column
            state = ""
        headers.append({
            "column": column, "title": title, "aria_sort": state,
            "query": _query(request, drop=(), sort=next_sort),
            "numeric": column not in ("label", "sent_at"),
        })
    return headers


def _charts(opens: dict, over_time: dict) -> dict:
    series = over_time["series"]
    return {
        "over_time": charts.column_chart(
            [row["start"].strftime("%m-%d") for row in series],
            [("Opt-outs", [row["opt_outs"] for row in series]), ("Failed messages", [row["failed"] for row in series])],
            title=f"Opt-outs and failed messages per {over_time['bucket']}",
        ) if over_time["totals"]["opt_outs"] or over_time["totals"]["failed"] else None,
        "devices": charts.bar_list(
            [(row["name"], row["opens"]) for row in opens["all"]["device"]], title="Opens by device, all devices"
        ) if opens["all"]["device"] else None,
    }


@action_required(READ_REPORTS)
def reports_csv(request: HttpRequest, name: str) -> HttpResponse:
    if name not in ACROSS_REPORT_NAMES:
        raise Http404("No such report.")
    try:
        data = across_report_get(name=name, humans_only=_humans_only(request), params=request.GET)
    except ValidationError as error:
        return HttpResponse("; ".join(error.messages), status=400, content_type="text/plain; charset=utf-8")
    header, rows = across_report_table(name, data)
    response = HttpResponse(csv_text(header, rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="reports-{name}-{data["from"]}-{data["to"]}.csv"'
    return response
