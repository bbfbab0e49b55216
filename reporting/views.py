"""The marketer's pages: the delivery dashboard and a delivery's tabs (Summary, Delivery log, Tracking,
Reports, Audit), report CSV downloads, the sandboxed hot-clicks document, and the Settings page.

Who may open what is the role's (`accounts.roles`): aggregate reads need READ_REPORTS, the pages naming
recipients READ_PERSONAL_DATA, the buttons that change a delivery MANAGE."""
from urllib.parse import urlencode

from bs4 import BeautifulSoup
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_POST

from accounts.decorators import action_required, role_required
from accounts.roles import MANAGE, MANAGE_SETTINGS, READ_PERSONAL_DATA, READ_REPORTS, actions_of, can
from accounts.selectors import user_token_get
from accounts.services import user_token_create, user_token_revoke
from beacon.csv_export import csv_text
from beacon.exceptions import ServiceError
from deliveries.content import is_tracked_link
from deliveries.models import DeliveryStatus, FailureReason, FailureType, MessageStatus, TrackedUrl, TrackingMode
from deliveries.services import deliveries_analysis_recover, deliveries_start_due
from deliveries.tokens import Purpose, make_token, tracking_url
from deliveries.forms import ScheduleForm
from deliveries.views import ACTIONS_BY_STATUS, SCHEDULABLE_STATUSES
from reporting import charts, health, reports, selectors
from reporting.consolidation.recompute import delivery_recompute
from reporting.freshness import reports_as_of
from reporting.reports.deliverability import FAILURE_GRANULARITIES
from reporting.reports.indicators import report_indicators, report_summary
from reporting.reports.links import report_hot_clicks
from reporting.reports.tables import report_table
from reporting.reports.time_series import GRANULARITIES, report_statistics
from tracking.models import EventType

# Marketer HTML is shown in an opaque-origin sandbox: no script, no form, no plugin, nothing fetched but
# images; it can be framed by Beacon's own pages only.
HOT_CLICKS_CSP = (
    "sandbox; default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
    "font-src https: data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)
# (key, title, the action needed to see it)
TABS = (
    ("summary", "Summary", READ_REPORTS),
    ("log", "Delivery log", READ_PERSONAL_DATA),
    ("tracking", "Tracking", READ_PERSONAL_DATA),
    ("reports", "Reports", READ_REPORTS),
    ("audit", "Audit", READ_REPORTS),
)
REPORT_TITLES = {
    "summary": "Delivery summary",
    "indicators": "Tracking indicators",
    "statistics": "Tracking statistics",
    "urls": "URLs and click streams",
    "hot-clicks": "Hot clicks",
    "opens-breakdown": "Breakdown of opens",
    "bounces": "Non-deliverables and bounces",
    "throughput": "Delivery throughput",
}

BREAKDOWN_SCOPES = {"all": "All devices", "mobile": "Mobile devices (phones and tablets)"}
BREAKDOWN_FACETS = {"os": "operating system", "device": "device", "browser": "browser"}


def _humans_only(request: HttpRequest) -> bool:
    return request.GET.get("machine") != "include"


def _start_scheduled_without_beat() -> None:
    """The embedded default has no Celery beat: its pages start the scheduled deliveries that are due
    (deliveries.services.scheduling; exactly once, whoever reads first)."""
    if settings.BEACON_TASKS_IN_PROCESS:
        deliveries_start_due()


def _tab(request: HttpRequest, delivery, tab: str, template: str, context: dict) -> HttpResponse:
    allowed = actions_of(request.user)
    return render(
        request,
        template,
        {
            "delivery": delivery,
            "tabs": [(key, title) for key, title, action in TABS if action in allowed],
            "tab": tab,
            "progress": selectors.delivery_progress(delivery=delivery),
            "actions": ACTIONS_BY_STATUS.get(delivery.status, ()),
            "schedule_form": ScheduleForm() if delivery.status in SCHEDULABLE_STATUSES and MANAGE in allowed else None,
            "server_timezone": settings.TIME_ZONE,
        }
        | context,
    )


@action_required(READ_REPORTS)
def dashboard(request: HttpRequest) -> HttpResponse:
    _start_scheduled_without_beat()
    search = request.GET.get("q", "").strip()[:200]
    status = request.GET.get("status", "")
    status = status if status in DeliveryStatus.values else ""
    sort = request.GET.get("sort", "")
    sort = sort if sort in selectors.DASHBOARD_SORTS else "newest"
    deliveries = [
        {"delivery": delivery, "progress": selectors.delivery_progress(delivery=delivery)}
        for delivery in selectors.deliveries_list(search=search, status=status, sort=sort)
    ]
    return render(request, "reporting/dashboard.html", {
        "deliveries": deliveries,
        "live_statuses": [DeliveryStatus.ANALYZING, DeliveryStatus.SENDING],
        "search": search,
        "status": status,
        "statuses": DeliveryStatus.choices,
        "sort": sort,
        "sorts": [("newest", "Newest"), ("label", "Label"), ("status", "Status")],
    })


@action_required(READ_REPORTS)
def delivery_progress(request: HttpRequest, delivery_id: int) -> JsonResponse:
    # The page polls this while the delivery analyzes: an analysis that died shows as such (back to draft)
    # even where no Celery beat runs the recovery.
    deliveries_analysis_recover(delivery_id=delivery_id)
    _start_scheduled_without_beat()
    return JsonResponse(selectors.delivery_progress(delivery=selectors.delivery_get(delivery_id=delivery_id)))


@action_required(READ_REPORTS)
def delivery_summary(request: HttpRequest, delivery_id: int) -> HttpResponse:
    _start_scheduled_without_beat()
    delivery = selectors.delivery_get(delivery_id=delivery_id)
    humans_only = _humans_only(request)
    as_of = reports_as_of()
    summary = report_summary(delivery=delivery)
    indicators = report_indicators(delivery=delivery, humans_only=humans_only)
    statistics = report_statistics(delivery=delivery, humans_only=humans_only, params={"granularity": "hour"})
    return _tab(request, delivery, "summary", "reporting/delivery_summary.html", {
        "summary": summary,
        "indicators": indicators,
        "humans_only": humans_only,
        "chart": _time_chart(statistics),
        "freshness": {"as_of": as_of},
    })


def _time_chart(statistics: dict):
    if not statistics["series"]:
        return None
    return charts.column_chart(
        [row["start"].strftime("%d %H:%M") for row in statistics["series"]],
        [("Opens", [row["opens"] for row in statistics["series"]]), ("Clicks", [row["clicks"] for row in statistics["series"]])],
        title=f"Opens and clicks per {statistics['granularity'].replace('-', ' ')}",
    )


# The delivery log's filters, by query parameter, and their choices; an unknown value filters nothing.
LOG_FILTERS = {"status": MessageStatus.choices, "failure_type": FailureType.choices, "failure_reason": FailureReason.choices}
# How much of a failure's detail (the relay's or the bounce's text) a row shows; the rest unfolds.
FAILURE_DETAIL_SHOWN = 120


@action_required(READ_PERSONAL_DATA)
def delivery_log(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = selectors.delivery_get(delivery_id=delivery_id)
    filters = {}
    for name, choices in LOG_FILTERS.items():
        value = request.GET.get(name, "")
        filters[name] = value if value in dict(choices) else ""
    page = Paginator(selectors.delivery_messages(delivery_id=delivery.pk, **filters), 50).get_page(request.GET.get("page"))
    mirror = TrackedUrl.objects.filter(delivery_id=delivery.pk, mode=TrackingMode.MIRROR).order_by("id").first()
    rows = [
        {
            "message": message,
            "mirror_url": tracking_url("m", make_token(Purpose.MIRROR, message.pk, mirror.pk))
            if mirror and message.status == MessageStatus.SENT else "",
        }
        for message in page.object_list
    ]
    chosen = {name: value for name, value in filters.items() if value}
    return _tab(request, delivery, "log", "reporting/delivery_log.html", {
        "page": page, "rows": rows, **filters, "statuses": MessageStatus.choices,
        "failure_types": FailureType.choices, "failure_reasons": FailureReason.choices,
        "detail_shown": FAILURE_DETAIL_SHOWN,
        "pager_query": "&" + urlencode(chosen) if chosen else "",
    })


@action_required(READ_PERSONAL_DATA)
def delivery_tracking(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = selectors.delivery_get(delivery_id=delivery_id)
    event_type = request.GET.get("type", "")
    if event_type not in EventType.values:
        event_type = ""
    page = Paginator(selectors.delivery_events(delivery_id=delivery.pk, event_type=event_type), 50).get_page(request.GET.get("page"))
    rows = selectors.delivery_event_rows(events=list(page.object_list))
    return _tab(request, delivery, "tracking", "reporting/delivery_tracking.html", {
        "page": page, "rows": rows, "event_type": event_type, "event_types": EventType.choices,
        "pager_query": f"&type={event_type}" if event_type else "",
    })


@action_required(READ_REPORTS)
def delivery_audit(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = selectors.delivery_get(delivery_id=delivery_id)
    return _tab(request, delivery, "audit", "reporting/delivery_audit.html", {
        "entries": selectors.delivery_audit_rows(
            delivery_id=delivery.pk, personal_data=can(request.user, READ_PERSONAL_DATA)
        ),
    })


@action_required(READ_REPORTS)
def delivery_reports(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = selectors.delivery_get(delivery_id=delivery_id)
    name = request.GET.get("report") or "indicators"
    if name not in reports.REPORTS:
        raise Http404("No such report.")
    humans_only = _humans_only(request)
    try:
        data = reports.report_get(delivery_id=delivery.pk, name=name, humans_only=humans_only, params=request.GET)
    except ValidationError as error:
        messages.error(request, "; ".join(f"{field}: {' '.join(errors)}" for field, errors in error.message_dict.items()))
        data = reports.report_get(delivery_id=delivery.pk, name=name, humans_only=humans_only)
    query = request.GET.copy()
    query.pop("machine", None)
    query["report"] = name
    return _tab(request, delivery, "reports", "reporting/delivery_reports.html", {
        "report": name,
        "report_titles": REPORT_TITLES,
        "report_title": REPORT_TITLES[name],
        "granularities": list(GRANULARITIES),
        "failure_granularities": FAILURE_GRANULARITIES,
        "group_bys": ["url", "label", "category"],
        "time_to": [
            (
                row["percent"],
                duration_range_text(row["opens_seconds_min"], row["opens_seconds"]),
                duration_range_text(row["clicks_seconds_min"], row["clicks_seconds"]),
            )
            for row in data.get("time_to", [])
        ],
        "breakdown": [
            (
                title,
                data[scope]["total_opens"],
                [(facet_name.capitalize(), data[scope][facet]) for facet, facet_name in BREAKDOWN_FACETS.items()],
            )
            for scope, title in BREAKDOWN_SCOPES.items()
        ] if name == "opens-breakdown" else [],
        "data": data,
        "humans_only": humans_only,
        "query": query.urlencode(),
        "csv_query": request.GET.urlencode(),
        "charts": _report_charts(name, data),
        "freshness": {"as_of": data["as_of"]},
    })


def duration_text(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min"


def duration_range_text(low: int | None, high: int | None) -> str:
    """A time known to within a half hour, said as such: "< 18 min" (the first half hour), "1 h 00 min – 1 h 30 min"."""
    if high is None:
        return "–"
    if not low:
        return f"< {duration_text(high)}"
    return f"{duration_text(low)} – {duration_text(high)}"


def _report_charts(name: str, data: dict) -> list:
    if name == "statistics":
        chart = _time_chart(data)
        return [chart] if chart else []
    if name == "opens-breakdown":
        return [
            charts.bar_list(
                [(row["name"], row["opens"]) for row in data[scope][facet]],
                title=f"Opens by {BREAKDOWN_FACETS[facet]}, {BREAKDOWN_SCOPES[scope].lower()}",
            )
            for scope in BREAKDOWN_SCOPES
            for facet in BREAKDOWN_FACETS
            if data[scope][facet]
        ]
    if name == "throughput" and data["hours"]:
        return [charts.column_chart(
            [row["hour"].strftime("%d %H:00") for row in data["hours"]],
            [("Success", [row["success"] for row in data["hours"]]), ("Errors", [row["errors"] for row in data["hours"]])],
            title="Messages per hour",
        )]
    if name == "urls" and data["links"]:
        return [charts.bar_list([(row["name"], row["clicks"]) for row in data["links"][:15]], title="Clicks per link")]
    if name == "bounces":
        bounce_charts = []
        if data["by_reason"]:
            bounce_charts.append(charts.bar_list(
                [(row["failure_reason"] or row["failure_type"], row["messages"]) for row in data["by_reason"]], title="Errors by reason"
            ))
        if data["series"]:
            bounce_charts.append(charts.column_chart(
                [row["start"].strftime("%Y-%m-%d" if data["granularity"] == "day" else "%d %H:00") for row in data["series"]],
                [("Hard", [row["hard"] for row in data["series"]]), ("Soft", [row["soft"] for row in data["series"]])],
                title=f"Failures per {data['granularity']}",
            ))
        return bounce_charts
    return []


@action_required(READ_REPORTS)
def delivery_report_csv(request: HttpRequest, delivery_id: int, name: str) -> HttpResponse:
    delivery = selectors.delivery_get(delivery_id=delivery_id)
    if name not in reports.REPORTS:
        raise Http404("No such report.")
    try:
        data = reports.report_get(delivery_id=delivery.pk, name=name, humans_only=_humans_only(request), params=request.GET)
    except ValidationError as error:
        return HttpResponse("; ".join(error.messages), status=400, content_type="text/plain")
    header, rows = report_table(name, data)
    response = HttpResponse(csv_text(header, rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="delivery-{delivery.pk}-{name}.csv"'
    return response


@action_required(MANAGE)
@require_POST
def delivery_recompute_view(request: HttpRequest, delivery_id: int) -> HttpResponse:
    try:
        delivery_recompute(delivery_id=delivery_id)
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, "Delivery and tracking indicators recomputed.")
    return redirect("reporting:delivery-summary", delivery_id=delivery_id)


def hot_clicks_document(html: str, links: list[dict]) -> str:
    """The delivery's HTML with each tracked link's share of clicks shown beside it; links are numbered as
    analysis numbers them, so each meets its `position`."""
    soup = BeautifulSoup(html or "<p>This delivery has no HTML content.</p>", "html.parser")
    by_position = {link["position"]: link for link in links}
    position = 0
    for anchor in soup.find_all(["a", "area"], href=True):
        if not is_tracked_link(anchor):
            continue
        position += 1
        link = by_position.get(position)
        if link is None:
            continue
        badge = soup.new_tag("span")
        badge["style"] = (
            "display:inline-block;margin-left:4px;padding:1px 6px;border-radius:9px;background:#e07b24;"
            "color:#fff;font:bold 12px sans-serif;vertical-align:middle"
        )
        badge.string = f"{link['share'] or 0:g}% ({link['clicks']})"
        anchor["style"] = (anchor.get("style", "") + ";outline:2px solid #e07b24").lstrip(";")
        anchor.insert_after(badge)
    return str(soup)


@action_required(READ_REPORTS)
@xframe_options_sameorigin
def hot_clicks_frame(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = selectors.delivery_get(delivery_id=delivery_id)
    data = report_hot_clicks(delivery=delivery, humans_only=_humans_only(request))
    response = HttpResponse(hot_clicks_document(delivery.html, data["links"]), content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = HOT_CLICKS_CSP
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response


def _settings_page(request: HttpRequest, *, new_token: str = "") -> HttpResponse:
    context = {"token": user_token_get(user=request.user), "new_token": new_token}
    if can(request.user, MANAGE_SETTINGS):
        context |= {
            "public_url": settings.BEACON_PUBLIC_URL,
            "signing_keys": health.signing_keys(),
            "health": health.pipeline_health(),
        }
    return render(request, "reporting/settings.html", context)


@role_required
@never_cache
def settings_page(request: HttpRequest) -> HttpResponse:
    """Settings. Every role sees here its own API token, and creates or revokes it; the public tracking
    host, the signing keys' state and the queue health are shown to roles with MANAGE_SETTINGS only
    (administrators)."""
    return _settings_page(request)


@role_required
@never_cache
@require_POST
def settings_token_create(request: HttpRequest) -> HttpResponse:
    # The new key is in this answer only (not cached, not kept in the session): shown once.
    token = user_token_create(user=request.user)
    return _settings_page(request, new_token=token.key)


@role_required
@require_POST
def settings_token_revoke(request: HttpRequest) -> HttpResponse:
    if user_token_revoke(user=request.user):
        messages.success(request, "API token revoked: it no longer works.")
    return redirect("reporting:settings")
