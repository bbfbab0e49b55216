"""Every report against hand-computed numbers, on the delivery of `conftest.Scenario`.

Humans only: total opens 3 (m1 ×2, m2); distinct opens measured 5 (m1, m2, and m3, m7, m9 whose click
implies an open), extrapolated for 2 text messages out of 10 to deliver: 5 × 10 / 8 = 6.25 → 6; counted
clicks 6 (the click on the opt-out link is not a click), by 4 recipients (m1, m3, m7, m9) and 5 persons
(b1..b5: m7 clicked from two browsers), so 1 estimated forward; raw reactivity 4 / 5, estimated 4 / 6.
All events add m4's machine open and click and m2's machine open: opens 5, distinct 6 → 7.5 → 8,
clicks 7 by 5 recipients and 6 persons (m4's click has no browser id: its recipient is the person).
"""
import datetime as dt

import pytest

from reporting.selectors import percent, report_get
from reporting.statistics import reports_refresh
from deliveries.models import DeliveryStatus
from tests.factories import DeliveryFactory, MessageFactory, TrackedUrlFactory
from tests.reporting.conftest import T0, make_event
from tracking.models import EventType


@pytest.fixture
def consolidated(scenario):
    reports_refresh()
    return scenario


def report(scenario, name, humans_only=True, **params):
    return report_get(delivery_id=scenario.delivery.pk, name=name, humans_only=humans_only, params=params)


def test_indicators_humans_only(consolidated):
    data = report(consolidated, "indicators")
    assert {key: data[key] for key in (
        "to_deliver", "success", "distinct_opens", "measured_distinct_opens", "total_opens", "distinct_clicks",
        "distinct_click_persons", "total_clicks", "estimated_forwards", "raw_reactivity", "estimated_reactivity",
        "opt_outs", "mirror_page_views",
    )} == {
        "to_deliver": 10, "success": 9, "distinct_opens": 6, "measured_distinct_opens": 5, "total_opens": 3,
        "distinct_clicks": 4, "distinct_click_persons": 5, "total_clicks": 6, "estimated_forwards": 1,
        "raw_reactivity": 80.0, "estimated_reactivity": 66.67, "opt_outs": 1, "mirror_page_views": 1,
    }
    assert data["percentages"]["distinct_opens"] == 66.67  # 6 of 9 successful messages
    assert data["percentages"]["distinct_clicks"] == 44.44
    assert data["percentages"]["success"] == 90.0


def test_indicators_with_machine_events(consolidated):
    data = report(consolidated, "indicators", humans_only=False)
    assert (data["total_opens"], data["measured_distinct_opens"], data["distinct_opens"]) == (5, 6, 8)
    assert (data["total_clicks"], data["distinct_clicks"], data["distinct_click_persons"]) == (7, 5, 6)
    assert (data["estimated_forwards"], data["raw_reactivity"], data["estimated_reactivity"]) == (1, 83.33, 62.5)


def test_indicators_by_domain(consolidated):
    by_domain = {row["domain"]: row for row in report(consolidated, "indicators")["by_domain"]}
    a, b = by_domain["a.example"], by_domain["b.example"]
    assert (a["to_deliver"], a["success"], a["distinct_opens"], a["total_opens"]) == (5, 5, 3, 3)
    assert (a["distinct_clicks"], a["distinct_click_persons"], a["total_clicks"], a["estimated_forwards"]) == (2, 2, 3, 0)
    assert (a["opt_outs"], a["raw_reactivity"]) == (1, 66.67)
    # 2 text messages of 5: 2 measured opens × 5 / 3 = 3.33 → 3.
    assert (b["to_deliver"], b["success"], b["measured_distinct_opens"], b["distinct_opens"]) == (5, 4, 2, 3)
    assert (b["distinct_clicks"], b["distinct_click_persons"], b["estimated_forwards"]) == (2, 3, 1)
    assert (b["mirror_page_views"], b["raw_reactivity"], b["estimated_reactivity"]) == (1, 100.0, 66.67)
    everything = {row["domain"]: row for row in report(consolidated, "indicators", humans_only=False)["by_domain"]}
    assert (everything["a.example"]["total_opens"], everything["a.example"]["distinct_click_persons"]) == (5, 3)


def test_indicators_without_any_event(db):
    delivery = DeliveryFactory(status=DeliveryStatus.FINISHED, to_deliver=3, success=3)
    for _ in range(3):
        MessageFactory(delivery=delivery)
    reports_refresh()
    data = report_get(delivery_id=delivery.pk, name="indicators")
    assert (data["distinct_opens"], data["total_clicks"], data["distinct_click_persons"]) == (0, 0, 0)
    assert data["raw_reactivity"] is None and data["estimated_reactivity"] is None
    assert data["percentages"]["distinct_opens"] == 0.0
    assert data["by_domain"][0]["domain"] == "example.org"


def test_only_text_messages_are_not_extrapolated(db):
    delivery = DeliveryFactory(status=DeliveryStatus.FINISHED, to_deliver=1, success=1)
    message = MessageFactory(delivery=delivery, email_format="text")
    make_event(message, EventType.CLICK, url=TrackedUrlFactory(delivery=delivery))
    reports_refresh()
    data = report_get(delivery_id=delivery.pk, name="indicators")
    assert (data["to_deliver"], data["measured_distinct_opens"], data["distinct_opens"]) == (1, 1, 1)


def test_summary(consolidated):
    data = report(consolidated, "summary")
    assert data["initial_population"] == 12
    assert data["excluded"] == 2
    assert data["excluded_by_cause"] == [{"cause": "duplicate", "recipients": 1}, {"cause": "quarantined", "recipients": 1}]
    assert (data["to_deliver"], data["processed"], data["success"], data["errors"], data["new_quarantines"]) == (10, 10, 9, 1, 0)
    assert data["percentages"] == {"processed": 100.0, "success": 90.0, "errors": 10.0}


def test_statistics_per_hour_and_time_to_reach(consolidated):
    data = report(consolidated, "statistics", granularity="hour")
    nine, ten, next_day = T0, T0 + dt.timedelta(hours=1), T0 + dt.timedelta(days=1, hours=1)
    assert [(row["start"], row["opens"], row["distinct_opens"], row["clicks"], row["distinct_clicks"]) for row in data["series"]] == [
        (nine, 2, 4, 4, 3), (ten, 1, 1, 1, 1), (next_day, 0, 0, 1, 0),
    ]
    time_to = {row["percent"]: row for row in data["time_to"]}
    assert time_to[50]["opens_seconds"] == 3600  # 2 of 3 opens by the end of 09:30-10:00
    assert time_to[100]["opens_seconds"] == 5400
    assert time_to[50]["clicks_seconds"] == 1800  # 3 of 6 clicks in the first half hour
    assert time_to[100]["clicks_seconds"] == 25 * 3600 + 1800


def test_statistics_per_half_hour_and_day(consolidated):
    half_hours = report(consolidated, "statistics", granularity="half-hour")["series"]
    assert [(row["start"].strftime("%d %H:%M"), row["distinct_opens"]) for row in half_hours] == [
        ("02 09:00", 2), ("02 09:30", 2), ("02 10:00", 0), ("02 10:30", 1), ("03 10:00", 0),
    ]
    days = report(consolidated, "statistics", granularity="day")["series"]
    assert [(row["start"].day, row["opens"], row["clicks"]) for row in days] == [(2, 3, 5), (3, 0, 1)]


def test_statistics_without_events(db):
    delivery = DeliveryFactory()
    data = report_get(delivery_id=delivery.pk, name="statistics")
    assert data["series"] == [] and data["time_to"][0]["opens_seconds"] is None


def test_urls_by_url_label_and_category(consolidated):
    data = report(consolidated, "urls")
    assert [(row["name"], row["clicks"], row["distinct_clicks"], row["share"]) for row in data["links"]] == [
        ("Sale", 5, 4, 83.33), ("Blog", 1, 1, 16.67),
    ]
    assert [(row["day"], row["clicks"]) for row in data["clicks_per_day"]] == [(dt.date(2026, 11, 2), 5), (dt.date(2026, 11, 3), 1)]
    assert [(row["from"], row["to"], row["recipients"], row["share"]) for row in data["click_streams"]] == [("Sale", "Blog", 1, 100.0)]
    by_category = report(consolidated, "urls", group_by="category")["links"]
    assert [(row["name"], row["clicks"]) for row in by_category] == [("shop", 5), ("(no category)", 1)]
    by_label = report(consolidated, "urls", group_by="label", **{"from": "2026-11-03", "to": "2026-11-03"})
    # m7's second click on Sale, on the 3rd; m7 first clicked Sale on the 2nd.
    assert [(row["name"], row["clicks"], row["distinct_clicks"]) for row in by_label["links"]] == [("Sale", 1, 0)]


def test_urls_with_machine_events(consolidated):
    data = report(consolidated, "urls", humans_only=False)
    assert [(row["name"], row["clicks"], row["distinct_clicks"]) for row in data["links"]] == [("Sale", 6, 5), ("Blog", 1, 1)]


def test_hot_clicks(consolidated):
    data = report(consolidated, "hot-clicks")
    assert [(row["position"], row["label"], row["clicks"], row["share"]) for row in data["links"]] == [
        (1, "Sale", 5, 83.33), (2, "Blog", 1, 16.67),
    ]


def test_opens_breakdown(consolidated):
    data = report(consolidated, "opens-breakdown")
    assert [(row["name"], row["opens"]) for row in data["all"]["os"]] == [("Windows", 2), ("iOS", 1)]
    assert [(row["name"], row["opens"], row["share"]) for row in data["all"]["device"]] == [("desktop", 2, 66.67), ("mobile", 1, 33.33)]
    assert [(row["name"], row["opens"]) for row in data["all"]["browser"]] == [("Chrome", 2), ("Mobile Safari", 1)]
    assert [(row["name"], row["opens"]) for row in data["mobile"]["os"]] == [("iOS", 1)]
    everything = report(consolidated, "opens-breakdown", humans_only=False)
    assert [(row["name"], row["opens"]) for row in everything["all"]["os"]] == [("Unknown", 2), ("Windows", 2), ("iOS", 1)]


def test_bounces(consolidated):
    data = report(consolidated, "bounces")
    assert (data["errors"], data["processed"], data["hard_bounces"], data["soft_bounces"]) == (2, 10, 1, 0)
    assert (data["hard_bounce_rate"], data["soft_bounce_rate"]) == (10.0, 0.0)
    assert [(row["failure_type"], row["messages"]) for row in data["by_type"]] == [("hard", 1), ("ignored", 1)]
    assert [(row["failure_reason"], row["messages"]) for row in data["by_reason"]] == [("user_unknown", 1), ("quarantined", 1)]
    assert data["by_domain"] == [{"domain": "b.example", "messages": 2, "hard": 1, "soft": 0, "ignored": 1}]


def test_throughput(consolidated):
    data = report(consolidated, "throughput")
    assert [(row["hour"], row["success"], row["errors"]) for row in data["hours"]] == [(T0, 9, 1)]
    assert (data["peak_per_hour"], data["average_per_hour"]) == (10, 10.0)


def test_percent():
    assert percent(1, 3) == 33.33
    assert percent(1, 0) is None
