"""Retention: raw events past the retention age are purged once consolidated; reports do not change."""
import datetime as dt

import pytest
from django.utils import timezone

from beacon.exceptions import TransitionNotAllowed
from reporting.consolidation.recompute import delivery_recompute
from reporting.retention import events_purge_expired
from reporting.reports import REPORT_NAMES, report_get
from reporting.statistics import reports_refresh
from reporting.tasks import purge_expired_events, refresh_reports
from tracking.models import EventType, TrackingEvent
from tests.reporting.conftest import make_event


def all_reports(delivery_id: int) -> dict:
    """Every report's numbers (not `as_of`, the time of the run that made them)."""
    return {
        (name, humans_only): report_get(delivery_id=delivery_id, name=name, humans_only=humans_only) | {"as_of": None}
        for name in REPORT_NAMES
        for humans_only in (True, False)
    }


@pytest.fixture
def aged(scenario, settings):
    """The scenario's events are from 2026-11-02; keep 10 days from a 'now' 30 days later."""
    settings.BEACON_EVENT_RETENTION_DAYS = 10
    recent = make_event(scenario.messages[1], EventType.OPEN, minutes=0)
    TrackingEvent.objects.filter(pk=recent.pk).update(logged_at=timezone.now())
    return scenario


def test_purge_keeps_every_report_unchanged(aged):
    reports_refresh()
    before = all_reports(aged.delivery.pk)
    assert events_purge_expired(batch_size=4) == 15
    assert list(TrackingEvent.objects.values_list("logged_at__date", flat=True)) == [timezone.now().date()]
    reports_refresh()
    assert all_reports(aged.delivery.pk) == before


def test_purge_consolidates_first(aged):
    events_purge_expired()
    assert report_get(delivery_id=aged.delivery.pk, name="indicators")["total_opens"] == 4


def test_purge_within_retention_deletes_nothing(scenario, settings):
    settings.BEACON_EVENT_RETENTION_DAYS = (timezone.now() - dt.datetime(2026, 11, 1, tzinfo=dt.UTC)).days + 5
    assert events_purge_expired() == 0
    assert TrackingEvent.objects.count() == 15


def test_recompute_is_refused_once_events_were_purged(aged, api_client):
    events_purge_expired()
    response = api_client.post(f"/api/deliveries/{aged.delivery.pk}/recompute/")
    assert response.status_code == 409
    assert "purged" in response.json()["detail"]
    with pytest.raises(TransitionNotAllowed, match="purged"):
        delivery_recompute(delivery_id=aged.delivery.pk)


def test_the_periodic_tasks(aged):
    assert refresh_reports.delay().get() == 16
    assert purge_expired_events.delay().get() == 15
