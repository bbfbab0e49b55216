"""Reports fresh on the embedded default (no Celery beat): a report read when the last consolidation is
older than BEACON_REPORTS_MAX_AGE_SECONDS consolidates first; every report says what time it is as of."""
import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from deliveries.tokens import Purpose, make_token
from reporting.freshness import consolidated_at
from tests.factories import MessageFactory, TrackedUrlFactory

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


@pytest.fixture
def message(db):
    return MessageFactory(sent_at=timezone.now() - dt.timedelta(hours=1))


def click(message) -> None:
    link = TrackedUrlFactory(delivery=message.delivery, url="https://shop.example.com/")
    response = Client().get(f"/r/{make_token(Purpose.CLICK, message.pk, link.pk)}", HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 302


def clicks_reported(api_client, message) -> dict:
    return api_client.get(f"/api/deliveries/{message.delivery_id}/reports/indicators/", {"machine": "include"}).json()


def test_a_click_shows_once_the_window_has_passed_with_nobody_consolidating(settings, api_client, message):
    settings.BEACON_REPORTS_MAX_AGE_SECONDS = 0
    click(message)
    body = clicks_reported(api_client, message)
    assert body["total_clicks"] == 1
    assert dt.datetime.fromisoformat(body["as_of"].replace("Z", "+00:00")) == consolidated_at()


def test_within_the_window_a_read_does_no_work(settings, api_client, message):
    settings.BEACON_REPORTS_MAX_AGE_SECONDS = 3600
    first = clicks_reported(api_client, message)  # never consolidated: this read does it
    click(message)
    second = clicks_reported(api_client, message)
    assert first["total_clicks"] == second["total_clicks"] == 0 and first["as_of"] == second["as_of"] is not None


def test_with_celery_beat_reads_never_consolidate(settings, api_client, message):
    settings.BEACON_REPORTS_MAX_AGE_SECONDS = None
    click(message)
    body = clicks_reported(api_client, message)
    assert body["total_clicks"] == 0 and body["as_of"] is None


def test_report_pages_say_how_fresh_they_are(settings, user, message):
    settings.BEACON_REPORTS_MAX_AGE_SECONDS = 0
    browser = Client()
    browser.force_login(user)
    for suffix in ("", "reports/?report=statistics"):
        html = browser.get(f"/deliveries/{message.delivery_id}/{suffix}").content.decode()
        as_of = timezone.localtime(consolidated_at())
        assert f'Reports as of <time datetime="{as_of.isoformat()}">{as_of:%H:%M:%S}</time> UTC' in html
