"""Reports across deliveries, against a hand computation over several deliveries, with their events stored by
the tracking store and consolidated by the real consolidation.

Period 2026-11-01..2026-11-15 (UTC). Delivery A sent 2026-11-02 09:00: a1, a2, a3 sent, a4 failed (hard).
a1 opens twice (iPhone, then Windows desktop) and clicks; a2 opens (iPhone) and clicks, both machine; a3 opts
out on 11-03. Delivery B sent 2026-11-10 12:00: b1 (text-only) clicks, b2 opens (Android phone), b3 opens
(Windows desktop) and opts out on 11-10, b4's opt-out on 11-11 is a machine's, b5 failed (soft).
Delivery C, sent 2026-10-01 (before the period), opens then, and c1 opts out on 11-04. Delivery D is a draft.

Humans only:
- A: total opens 2, distinct opens 1 (a1), clicks 1 by 1, raw reactivity 100%, opt-outs 1; bounces 1 of 4
  processed (25%).
- B: total opens 2, distinct opens measured 3 (b1's click implies an open), extrapolated for 1 text
  message of 5: 3 × 5 / 4 = 3.75 → 4; clicks 1 by 1, raw reactivity 1 / 3 = 33.33%, opt-outs 1; bounces 1
  of 5 (20%).
- The period (A and B): to deliver 9, success 7, distinct opens 5 (measured 4), opens 4, clicks 2 by 2, raw
  reactivity 2 / 4 = 50%, opt-outs 2, bounces 2 of 9 processed (22.22%).
- Opens by OS: Windows 2, iOS 1, Android 1; by device: desktop 2, mobile 2; by browser, as the parser names
  them: Chrome 3 (Windows twice, Android), the iPhone's mail view 1 (C's open is not of the period).
- Over time, by day: opt-outs 11-03 (a3), 11-04 (c1: counted when it happened, whatever the delivery),
  11-10 (b3); failed messages 1 of 4 processed on 11-02, 1 of 5 on 11-10.
With machine events: A's opens 3, distinct opens 2, clicks 2 by 2; B's opt-outs 2 (11-11 too); opens by
OS: iOS 2, Windows 2, Android 1.
"""
import datetime as dt
from urllib.parse import quote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from deliveries.models import DeliveryStatus, FailureReason, FailureType, MessageStatus
from reporting.reports.across import MAX_PERIOD_DAYS, across_report_get
from reporting.statistics import reports_refresh
from tests.factories import DeliveryFactory, MessageFactory, TrackedUrlFactory, UserFactory
from tracking.ingest.event import new_event
from tracking.ingest.store import events_store
from tracking.models import EventType

pytestmark = pytest.mark.django_db

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
ANDROID = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"
A_SENT = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
B_SENT = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC)
C_SENT = dt.datetime(2026, 10, 1, 9, 0, tzinfo=dt.UTC)
PERIOD = {"from": "2026-11-01", "to": "2026-11-15"}


def _delivery(label, sent_at, statuses, *, text=()):
    delivery = DeliveryFactory(
        label=label, status=DeliveryStatus.FINISHED, sending_started_at=sent_at, to_deliver=len(statuses),
        processed=len(statuses), success=sum(status == "sent" for status in statuses),
        errors=sum(status != "sent" for status in statuses),
    )
    messages = []
    for number, status in enumerate(statuses, start=1):
        failure = {
            "hard": {"failure_type": FailureType.HARD, "failure_reason": FailureReason.USER_UNKNOWN},
            "soft": {"failure_type": FailureType.SOFT, "failure_reason": FailureReason.MAILBOX_FULL},
        }.get(status, {})
        messages.append(MessageFactory(
            delivery=delivery, status=MessageStatus.SENT if status == "sent" else MessageStatus.FAILED,
            email_format="text" if number in text else "html", sent_at=sent_at + dt.timedelta(minutes=number),
            **failure,
        ))
    return delivery, messages


def _event(message, event_type, at, *, url=None, user_agent="", browser_id="", machine=""):
    return new_event(
        type=event_type, delivery_id=message.delivery_id, message_id=message.pk, profile_id=message.profile_id,
        tracked_url_id=url.pk if url else None, user_agent=user_agent, browser_id=browser_id, machine_reason=machine,
    )._replace(logged_at=at.timestamp())


@pytest.fixture
def deliveries(django_capture_on_commit_callbacks):
    a, (a1, a2, a3, _a4) = _delivery("Spring", A_SENT, ["sent", "sent", "sent", "hard"])
    b, (b1, b2, b3, b4, _b5) = _delivery("Autumn", B_SENT, ["sent", "sent", "sent", "sent", "soft"], text=(1,))
    c, (c1,) = _delivery("Old", C_SENT, ["sent"])
    DeliveryFactory(label="Draft")
    a_link, b_link = TrackedUrlFactory(delivery=a), TrackedUrlFactory(delivery=b)
    minutes = dt.timedelta(minutes=1)
    # The parse of new user agents runs when the store's transaction commits.
    with django_capture_on_commit_callbacks(execute=True):
        events_store([
            _event(a1, EventType.OPEN, A_SENT + 10 * minutes, user_agent=IPHONE),
            _event(a1, EventType.OPEN, A_SENT + 120 * minutes, user_agent=WINDOWS),
            _event(a1, EventType.CLICK, A_SENT + 15 * minutes, url=a_link, browser_id="a1"),
            _event(a2, EventType.OPEN, A_SENT + minutes, user_agent=IPHONE, machine="apple_mpp"),
            _event(a2, EventType.CLICK, A_SENT + minutes, url=a_link, machine="scanner"),
            _event(a3, EventType.OPT_OUT, dt.datetime(2026, 11, 3, 10, 0, tzinfo=dt.UTC)),
            _event(b1, EventType.CLICK, B_SENT + 30 * minutes, url=b_link, browser_id="b1"),
            _event(b2, EventType.OPEN, B_SENT + 5 * minutes, user_agent=ANDROID),
            _event(b3, EventType.OPEN, B_SENT + 40 * minutes, user_agent=WINDOWS),
            _event(b3, EventType.OPT_OUT, B_SENT + 60 * minutes),
            _event(b4, EventType.OPT_OUT, dt.datetime(2026, 11, 11, 8, 0, tzinfo=dt.UTC), machine="scanner"),
            _event(c1, EventType.OPEN, C_SENT + 60 * minutes, user_agent=IPHONE),
            _event(c1, EventType.OPT_OUT, dt.datetime(2026, 11, 4, 9, 0, tzinfo=dt.UTC)),
        ])
    reports_refresh()
    return {"a": a, "b": b, "c": c}


def report(name, humans_only=True, **params):
    return across_report_get(name=name, humans_only=humans_only, params=PERIOD | params)


FIGURES = (
    "to_deliver", "success", "distinct_opens", "measured_distinct_opens", "total_opens", "distinct_clicks",
    "total_clicks", "raw_reactivity", "opt_outs", "hard_bounces", "soft_bounces", "bounces", "processed", "bounce_rate",
)


def figures(row):
    return {name: row[name] for name in FIGURES}


def test_deliveries_of_the_period_side_by_side(deliveries):
    data = report("deliveries")
    assert [row["label"] for row in data["deliveries"]] == ["Autumn", "Spring"]  # latest sent first
    autumn, spring = data["deliveries"]
    assert figures(spring) == {
        "to_deliver": 4, "success": 3, "distinct_opens": 1, "measured_distinct_opens": 1, "total_opens": 2,
        "distinct_clicks": 1, "total_clicks": 1, "raw_reactivity": 100.0, "opt_outs": 1, "hard_bounces": 1,
        "soft_bounces": 0, "bounces": 1, "processed": 4, "bounce_rate": 25.0,
    }
    assert figures(autumn) == {
        "to_deliver": 5, "success": 4, "distinct_opens": 4, "measured_distinct_opens": 3, "total_opens": 2,
        "distinct_clicks": 1, "total_clicks": 1, "raw_reactivity": 33.33, "opt_outs": 1, "hard_bounces": 0,
        "soft_bounces": 1, "bounces": 1, "processed": 5, "bounce_rate": 20.0,
    }
    assert autumn["percentages"] == {"success": 80.0, "distinct_opens": 100.0, "distinct_clicks": 25.0, "opt_outs": 25.0}
    assert (autumn["id"], autumn["sent_at"]) == (deliveries["b"].pk, B_SENT)
    assert figures(data["totals"]) == {
        "to_deliver": 9, "success": 7, "distinct_opens": 5, "measured_distinct_opens": 4, "total_opens": 4,
        "distinct_clicks": 2, "total_clicks": 2, "raw_reactivity": 50.0, "opt_outs": 2, "hard_bounces": 1,
        "soft_bounces": 1, "bounces": 2, "processed": 9, "bounce_rate": 22.22,
    }
    assert data["totals"]["deliveries"] == 2
    assert (data["from"], data["to"], data["machine"]) == (dt.date(2026, 11, 1), dt.date(2026, 11, 15), "exclude")


def test_deliveries_with_machine_events(deliveries):
    spring, autumn = sorted(report("deliveries", humans_only=False)["deliveries"], key=lambda row: row["label"], reverse=True)
    assert (spring["total_opens"], spring["distinct_opens"], spring["total_clicks"], spring["distinct_clicks"]) == (3, 2, 2, 2)
    assert (autumn["opt_outs"], autumn["total_opens"]) == (2, 2)


@pytest.mark.parametrize("sort, labels", [
    ("-sent_at", ["Autumn", "Spring"]),
    ("sent_at", ["Spring", "Autumn"]),
    ("label", ["Autumn", "Spring"]),
    ("-label", ["Spring", "Autumn"]),
    ("-distinct_opens", ["Autumn", "Spring"]),
    ("raw_reactivity", ["Autumn", "Spring"]),
    ("-raw_reactivity", ["Spring", "Autumn"]),
    ("-bounce_rate", ["Spring", "Autumn"]),
    ("to_deliver", ["Spring", "Autumn"]),
])
def test_deliveries_sort_by_any_indicator(deliveries, sort, labels):
    data = report("deliveries", sort=sort)
    assert data["sort"] == sort
    assert [row["label"] for row in data["deliveries"]] == labels


def test_a_rate_of_nothing_sorts_last_either_way(deliveries):
    DeliveryFactory(label="Nobody", status=DeliveryStatus.FINISHED, sending_started_at=A_SENT + dt.timedelta(days=1))
    for sort in ("raw_reactivity", "-raw_reactivity"):
        assert [row["label"] for row in report("deliveries", sort=sort)["deliveries"]][-1] == "Nobody"


def test_opens_by_os_browser_and_device_across_the_period(deliveries):
    data = report("opens-breakdown")
    names = lambda rows: {row["name"]: row["opens"] for row in rows}  # noqa: E731
    assert data["all"]["total_opens"] == 4
    assert names(data["all"]["os"]) == {"Windows": 2, "iOS": 1, "Android": 1}
    assert names(data["all"]["device"]) == {"desktop": 2, "mobile": 2}
    assert names(data["all"]["browser"]) == {"Chrome": 3, "Mobile Safari UI/WKWebView": 1}
    assert names(data["mobile"]["os"]) == {"iOS": 1, "Android": 1}
    assert data["all"]["os"][0] == {"name": "Windows", "opens": 2, "share": 50.0}

    everything = report("opens-breakdown", humans_only=False)
    assert names(everything["all"]["os"]) == {"iOS": 2, "Windows": 2, "Android": 1}


def test_opt_outs_and_failures_by_day(deliveries):
    data = report("over-time")
    series = {row["start"]: row for row in data["series"]}
    assert list(series) == [dt.date(2026, 11, day) for day in range(1, 16)]
    assert {day.day: row["opt_outs"] for day, row in series.items() if row["opt_outs"]} == {3: 1, 4: 1, 10: 1}
    assert {day.day: (row["processed"], row["failed"], row["failed_rate"]) for day, row in series.items() if row["processed"]} == {
        2: (4, 1, 25.0), 10: (5, 1, 20.0),
    }
    assert series[dt.date(2026, 11, 5)] == {
        "start": dt.date(2026, 11, 5), "opt_outs": 0, "processed": 0, "failed": 0, "failed_rate": None,
    }
    assert data["totals"] == {"opt_outs": 3, "processed": 9, "failed": 2}
    machine = {row["start"].day: row["opt_outs"] for row in report("over-time", humans_only=False)["series"] if row["opt_outs"]}
    assert machine == {3: 1, 4: 1, 10: 1, 11: 1}


def test_opt_outs_and_failures_by_week(deliveries):
    data = report("over-time", bucket="week")
    # 2026-11-01 is a Sunday: its week starts on Monday 10-26, and only its days within the period count.
    assert [(row["start"], row["opt_outs"], row["processed"], row["failed"]) for row in data["series"]] == [
        (dt.date(2026, 10, 26), 0, 0, 0),
        (dt.date(2026, 11, 2), 2, 4, 1),
        (dt.date(2026, 11, 9), 1, 5, 1),
    ]
    assert data["bucket"] == "week"


def test_an_empty_period(deliveries):
    params = {"from": "2025-01-01", "to": "2025-01-31"}
    deliveries_data = across_report_get(name="deliveries", params=params)
    assert deliveries_data["deliveries"] == []
    assert deliveries_data["totals"]["deliveries"] == 0 and deliveries_data["totals"]["raw_reactivity"] is None
    assert deliveries_data["totals"]["bounce_rate"] is None
    opens = across_report_get(name="opens-breakdown", params=params)
    assert opens["all"] == {"total_opens": 0, "os": [], "device": [], "browser": []}
    series = across_report_get(name="over-time", params=params)["series"]
    assert len(series) == 31 and not any(row["opt_outs"] or row["processed"] for row in series)


def test_the_default_period_is_the_last_30_days(deliveries):
    data = across_report_get(name="deliveries", params={}, today=dt.date(2026, 11, 12))
    assert (data["from"], data["to"]) == (dt.date(2026, 10, 14), dt.date(2026, 11, 12))
    assert [row["label"] for row in data["deliveries"]] == ["Autumn", "Spring"]
    only_from = across_report_get(name="deliveries", params={"from": "2026-09-20"}, today=dt.date(2026, 11, 12))
    assert (only_from["from"], only_from["to"]) == (dt.date(2026, 9, 20), dt.date(2026, 10, 19))
    assert [row["label"] for row in only_from["deliveries"]] == ["Old"]
    only_to = across_report_get(name="deliveries", params={"to": "2026-11-05"}, today=dt.date(2026, 11, 12))
    assert (only_to["from"], only_to["to"]) == (dt.date(2026, 10, 7), dt.date(2026, 11, 5))


def test_the_period_includes_both_its_days_whole(deliveries):
    assert [row["label"] for row in report("deliveries", **{"from": "2026-11-10", "to": "2026-11-10"})["deliveries"]] == ["Autumn"]
    assert report("deliveries", **{"from": "2026-11-03", "to": "2026-11-09"})["deliveries"] == []


def _queries(name):
    with CaptureQueriesContext(connection) as queries:
        report(name)
    return len(queries)


@pytest.mark.parametrize("name", ["deliveries", "opens-breakdown", "over-time"])
def test_a_constant_number_of_queries_whatever_the_number_of_deliveries(deliveries, name):
    before = _queries(name)
    for day in range(3, 9):
        more, (message, *_rest) = _delivery(f"More {day}", A_SENT + dt.timedelta(days=day), ["sent", "hard"])
        events_store([
            _event(message, EventType.OPEN, A_SENT + dt.timedelta(days=day, hours=1), user_agent=f"Agent {day}"),
            _event(message, EventType.OPT_OUT, A_SENT + dt.timedelta(days=day, hours=2)),
        ])
    reports_refresh()
    assert len(report("deliveries")["deliveries"]) == 8
    assert _queries(name) == before


def test_opt_outs_per_half_hour_survive_a_recompute(deliveries):
    from reporting.consolidation.recompute import delivery_recompute

    before = report("over-time", humans_only=False)
    delivery_recompute(delivery_id=deliveries["b"].pk)
    after = report("over-time", humans_only=False)
    assert (after["series"], after["totals"]) == (before["series"], before["totals"])
    assert after["totals"]["opt_outs"] == 4


# --- Through the API, the page and the CSV downloads --------------------------------------------------------


@pytest.fixture
def api():
    client = APIClient()
    client.force_authenticate(UserFactory())
    return client


def test_the_api_answers_each_report(deliveries, api):
    response = api.get("/api/reports/deliveries/?from=2026-11-01&to=2026-11-15&sort=label")
    assert response.status_code == 200
    body = response.json()
    assert [row["label"] for row in body["deliveries"]] == ["Autumn", "Spring"]
    assert (body["from"], body["to"], body["totals"]["bounces"]) == ("2026-11-01", "2026-11-15", 2)
    body = api.get("/api/reports/opens-breakdown/?from=2026-11-01&to=2026-11-15&machine=include").json()
    assert body["machine"] == "include" and body["all"]["total_opens"] == 5
    body = api.get("/api/reports/over-time/?from=2026-11-01&to=2026-11-15&bucket=week").json()
    assert [row["opt_outs"] for row in body["series"]] == [0, 2, 1]


def test_the_api_defaults_to_the_last_30_days(api):
    body = api.get("/api/reports/deliveries/").json()
    last = dt.date.fromisoformat(body["to"])
    assert dt.date.fromisoformat(body["from"]) == last - dt.timedelta(days=29)
    assert body["deliveries"] == []


def test_the_api_answers_csv(deliveries, api):
    response = api.get("/api/reports/deliveries/?from=2026-11-01&to=2026-11-15&format=csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert 'filename="reports-deliveries-2026-11-01-2026-11-15.csv"' in response["Content-Disposition"]
    lines = response.content.decode().splitlines()
    assert lines[0].startswith("delivery_id,label,status,sent_at,to_deliver,success,distinct_opens")
    assert lines[1].split(",")[1:3] == ["Autumn", "finished"]
    assert lines[-1].startswith(",(all),,,9,7,5,")
    over_time = api.get("/api/reports/over-time/?from=2026-11-01&to=2026-11-03&format=csv").content.decode().splitlines()
    assert over_time == [
        "start,opt_outs,processed,failed,failed_rate", "2026-11-01,0,0,0,", "2026-11-02,0,4,1,25.0", "2026-11-03,1,0,0,",
    ]


def test_an_unknown_report_is_a_404(api):
    response = api.get("/api/reports/nothing/")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


HOSTILE = [
    ("from", "yesterday"),
    ("from", "2026-13-01"),
    ("from", "2026-02-30"),
    ("from", "0000-01-01"),
    ("from", "20261101"),
    ("from", "2026-W44-1"),
    ("to", "9" * 10_000),
    ("to", "2026-11-01<script>alert(1)</script>"),
    ("to", "\ud800"),
    ("to", "２０２６-１１-０１"),
    ("sort", "id; DROP TABLE deliveries_delivery"),
    ("sort", "-" * 5000),
    ("bucket", "month"),
    ("machine", "sometimes"),
]
CROSSED = [
    ({"from": "2026-11-15", "to": "2026-11-01"}, "to"),
    ({"from": "2025-01-01", "to": "2026-01-02"}, "to"),
]


@pytest.mark.parametrize("field, value", HOSTILE)
def test_the_api_refuses_a_bad_parameter_with_400(api, field, value):
    # The sort is the side-by-side report's, the bucket the over-time report's; the others are everyone's.
    for name in {"sort": ["deliveries"], "bucket": ["over-time"]}.get(field, ["deliveries", "opens-breakdown", "over-time"]):
        response = api.get(f"/api/reports/{name}/?bucket=day&{field}={quote(value, safe='', errors='surrogatepass')}")
        assert response.status_code == 400, name
        assert field in response.json()["fields"]


@pytest.mark.parametrize("params, field", CROSSED)
def test_the_api_refuses_a_period_backwards_or_too_long(api, params, field):
    response = api.get("/api/reports/over-time/", params)
    assert response.status_code == 400
    assert list(response.json()["fields"]) == [field]


def test_the_longest_period_and_the_calendars_edges_are_answered(api):
    longest = dt.date(2026, 1, 1) + dt.timedelta(days=MAX_PERIOD_DAYS - 1)
    assert api.get("/api/reports/over-time/", {"from": "2026-01-01", "to": longest.isoformat()}).status_code == 200
    for params in ({"from": "9999-12-31", "to": "9999-12-31"}, {"from": "9999-12-30"}, {"to": "0001-01-05"},
                   {"from": "0001-01-01", "to": "0001-01-01", "bucket": "week"}):
        for name in ("deliveries", "opens-breakdown", "over-time"):
            assert api.get(f"/api/reports/{name}/", params).status_code == 200, (name, params)


def test_a_nul_in_a_parameter_is_a_400(api):
    assert api.get("/api/reports/deliveries/?from=2026-11-01%00").status_code == 400


@pytest.fixture
def page_client():
    from django.test import Client

    client = Client()
    client.force_login(UserFactory())
    return client


def test_the_page_shows_the_three_reports(deliveries, page_client):
    response = page_client.get("/reports/?from=2026-11-01&to=2026-11-15&sort=-opt_outs")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Spring" in html and "Autumn" in html and "Old" not in html and "Draft" not in html
    assert f'href="/deliveries/{deliveries["a"].pk}/"' in html
    assert "All 2 deliveries" in html
    assert 'aria-sort="descending"><a href="?from=2026-11-01&amp;to=2026-11-15&amp;sort=opt_outs">Opt-outs' in html
    assert "/reports/over-time.csv?from=2026-11-01&amp;to=2026-11-15&amp;sort=-opt_outs" in html
    assert "Opt-outs and failed messages per day" in html  # the chart
    assert " style=" not in html and "<script>" not in html


@pytest.mark.parametrize("field, value", [*HOSTILE[:-1], ("from", "2026-11-15&to=2026-11-01"), ("to", "2027-12-31")])
def test_the_page_shows_a_bad_field_as_the_forms_error(deliveries, page_client, field, value):
    response = page_client.get(f"/reports/?from=2026-11-01&{field}={quote(value, safe='=&', errors='surrogatepass')}")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'class="field-error"' in html
    assert ('aria-invalid="true"' in html) is (field != "sort")  # the sort is a column's link, not a field
    assert "<script>alert" not in html


def test_the_csv_download_refuses_a_bad_period(page_client):
    response = page_client.get("/reports/deliveries.csv?from=2026-11-15&to=2026-11-01")
    assert response.status_code == 400 and b"before 'from'" in response.content


def test_the_csv_download_of_the_page(deliveries, page_client):
    response = page_client.get("/reports/opens-breakdown.csv?from=2026-11-01&to=2026-11-15&machine=include")
    lines = response.content.decode().splitlines()
    assert lines[0] == "devices,facet,name,opens,share"
    assert "all,os,iOS,2,40.0" in lines
