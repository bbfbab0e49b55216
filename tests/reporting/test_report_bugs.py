"""Bugs seen in the reports, each pinned: overlapping axis labels, half-width charts, untitled breakdown
charts, the `url,url` CSV header, and "time to reach" rounded up to the end of a half hour."""
import csv
import datetime as dt
import io
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from reporting import charts
from reporting.statistics import reports_refresh
from tests.factories import DeliveryFactory, MessageFactory
from tests.reporting.conftest import T0, make_event
from tracking.models import EventType


@pytest.fixture
def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_axis_labels_never_overlap():
    for count in (5, 20, 24, 48, 200):
        labels = [f"{day:02d} {hour:02d}:00" for day, hour in ((2 + n // 24, n % 24) for n in range(count))]
        svg = str(charts.column_chart(labels, [("Opens", [1] * count), ("Clicks", [2] * count)], title="t"))
        written = [
            (float(x), float(size), text)
            for x, size, text in re.findall(r'<text(?: class="axis-label")? x="([\d.]+)" y="[\d.]+" font-size="(\d+)">([^<]*)<', svg)
            if text in labels
        ]
        assert written[0][2] == labels[0]
        for (x, size, text), (next_x, _, _) in zip(written, written[1:]):
            assert next_x - x >= len(text) * size * 0.6, (count, text)


def test_charts_take_the_whole_width_of_their_box():
    column = str(charts.column_chart(["a", "b"], [("Opens", [1, 2])], title="t"))
    bars = str(charts.bar_list([("Windows", 3)], title="t"))
    for svg in (column, bars):
        assert "style=" not in svg and "max-width" not in svg
    # One canvas width for all, wide enough for the main column: text keeps one size from chart to chart.
    assert {int(re.search(r'viewBox="0 0 (\d+) ', svg).group(1)) for svg in (column, bars)} == {960}
    css = (Path(settings.BASE_DIR) / "static" / "reporting" / "beacon.css").read_text()
    rule = re.search(r"svg\.chart \{([^}]*)\}", css).group(1)
    assert "width: 100%" in rule and "max-height" not in rule and "max-width" not in rule


def test_the_breakdown_charts_have_titles(browser, scenario):
    reports_refresh()
    html = browser.get(f"/deliveries/{scenario.delivery.pk}/reports/?report=opens-breakdown&machine=include").content.decode()
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", html)
    assert len(captions) == html.count("<svg") == 6
    assert "Opens by operating system, all devices" in captions
    assert "Opens by browser, mobile devices (phones and tablets)" in captions


def test_urls_csv_by_url_names_its_columns_apart(api_client, scenario):
    reports_refresh()
    response = api_client.get(f"/api/deliveries/{scenario.delivery.pk}/reports/urls/", {"format": "csv", "group_by": "url"})
    header, first, *_ = csv.reader(io.StringIO(response.content.decode()))
    assert header == ["link", "url", "clicks", "distinct_clicks", "share"]
    assert first[:2] == ["Sale", "https://shop.example.com/a"]


def test_time_to_reach_says_it_is_known_to_the_half_hour(browser, api_client, db):
    """Sending started at 09:12 and every open came by 09:14: the half hour 09:00-09:30 ends 18 minutes
    after the start, which is all the rollups know. "18 min" would claim more; "< 18 min" is true."""
    delivery = DeliveryFactory(sending_started_at=T0 + dt.timedelta(minutes=12))
    for minutes in (13, 14):
        make_event(MessageFactory(delivery=delivery, sent_at=T0 + dt.timedelta(minutes=12)), EventType.OPEN, minutes=minutes)
    late = MessageFactory(delivery=delivery, sent_at=T0 + dt.timedelta(minutes=12))
    make_event(late, EventType.OPEN, minutes=75)
    reports_refresh()
    body = api_client.get(f"/api/deliveries/{delivery.pk}/reports/statistics/", {"machine": "include"}).json()
    by_percent = {row["percent"]: row for row in body["time_to"]}
    assert (by_percent[50]["opens_seconds_min"], by_percent[50]["opens_seconds"]) == (0, 18 * 60)
    assert (by_percent[100]["opens_seconds_min"], by_percent[100]["opens_seconds"]) == (48 * 60, 78 * 60)
    html = browser.get(f"/deliveries/{delivery.pk}/reports/?report=statistics&machine=include").content.decode()
    assert "<td>50%</td><td class=\"num\">&lt; 18 min</td>" in html
    assert "<td>100%</td><td class=\"num\">1 h 18 min</td>" not in html
    assert "48 min – 1 h 18 min" in html
