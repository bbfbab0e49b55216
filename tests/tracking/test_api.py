from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import (
    DeliveryFactory,
    MessageFactory,
    ProfileFactory,
    TrackedUrlFactory,
    TrackingEventFactory,
)
from tracking.models import EventType

pytestmark = pytest.mark.django_db


@pytest.fixture
def person_events():
    profile = ProfileFactory()
    now = timezone.now()
    spring = MessageFactory(profile=profile, delivery=DeliveryFactory(label="Spring"))
    autumn = MessageFactory(profile=profile, delivery=DeliveryFactory(label="Autumn"))
    gone = MessageFactory(profile=profile, delivery=DeliveryFactory(label="Deleted later"))
    link = TrackedUrlFactory(delivery=spring.delivery, url="https://shop.example.com/sale", label="Sale")
    events = {
        "open": TrackingEventFactory(message=spring, type=EventType.OPEN, logged_at=now - timedelta(hours=3)),
        "click": TrackingEventFactory(
            message=spring, type=EventType.CLICK, tracked_url=link, logged_at=now - timedelta(hours=2)
        ),
        "scanner": TrackingEventFactory(
            message=autumn, type=EventType.CLICK, is_machine=True, machine_reason="scanner", logged_at=now - timedelta(hours=1)
        ),
        "web": TrackingEventFactory(
            message=autumn, type=EventType.WEB_PAGE, page_url="https://shop.example.com/p/1", logged_at=now
        ),
    }
    TrackingEventFactory(message=gone, type=EventType.OPEN)
    gone.delivery.delete()
    TrackingEventFactory(type=EventType.OPEN)  # someone else's
    return profile, events


def test_profile_tracking_lists_events_of_existing_deliveries_newest_first(api_client, person_events):
    profile, events = person_events
    response = api_client.get(f"/api/profiles/{profile.id}/tracking/")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [row["type"] for row in results] == ["web_page", "click", "click", "open"]
    click = results[2]
    assert click["url"] == "https://shop.example.com/sale" and click["label"] == "Sale"
    assert click["delivery"] == {"id": events["click"].delivery_id, "label": "Spring"}
    assert click["machine"] is False and click["logged_at"]
    assert results[0]["url"] == "https://shop.example.com/p/1"
    assert results[1]["machine"] is True


def test_profile_tracking_filters_and_sorts(api_client, person_events):
    profile, events = person_events
    url = f"/api/profiles/{profile.id}/tracking/"
    humans = api_client.get(url, {"machine": "exclude"}).json()["results"]
    assert len(humans) == 3 and not any(row["machine"] for row in humans)
    clicks = api_client.get(url, {"type": "click", "ordering": "logged_at"}).json()["results"]
    assert [row["machine"] for row in clicks] == [False, True]
    by_delivery = api_client.get(url, {"ordering": "delivery"}).json()["results"]
    assert [row["delivery"]["label"] for row in by_delivery] == ["Autumn", "Autumn", "Spring", "Spring"]
    since = api_client.get(url, {"since": (timezone.now() - timedelta(minutes=90)).isoformat()}).json()["results"]
    assert [row["type"] for row in since] == ["web_page", "click"]


@pytest.mark.parametrize("params", [{"type": "bogus"}, {"machine": "maybe"}, {"ordering": "email"}, {"since": "yesterday"}])
def test_bad_filters_are_400_with_field_errors(api_client, person_events, params):
    profile, _ = person_events
    response = api_client.get(f"/api/profiles/{profile.id}/tracking/", params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid" and set(body["fields"]) == set(params)


def test_unknown_profile_is_404_and_anonymous_is_refused(api_client, person_events):
    assert api_client.get("/api/profiles/999999/tracking/").status_code == 404
    profile, _ = person_events
    assert APIClient().get(f"/api/profiles/{profile.id}/tracking/").status_code in (401, 403)
    assert APIClient().get("/api/events/").status_code in (401, 403)


def test_events_api_pages_with_a_cursor(api_client, person_events):
    first = api_client.get("/api/events/", {"page_size": 4})
    assert first.status_code == 200
    body = first.json()
    assert len(body["results"]) == 4 and body["next"] and "cursor=" in body["next"]
    rest = api_client.get(body["next"]).json()
    ids = [row["id"] for row in body["results"] + rest["results"]]
    assert len(ids) == len(set(ids)) == 6
    assert ids == sorted(ids, reverse=True)


def test_events_api_filters(api_client, person_events):
    profile, events = person_events
    rows = api_client.get("/api/events/", {"profile": profile.id, "machine": "only"}).json()["results"]
    assert [row["event_id"] for row in rows] == [str(events["scanner"].event_id)]
    assert rows[0]["machine_reason"] == "scanner"
    rows = api_client.get("/api/events/", {"delivery": events["open"].delivery_id, "type": ["open", "click"]}).json()["results"]
    assert {row["type"] for row in rows} == {"open", "click"}
    until = api_client.get("/api/events/", {"profile": profile.id, "until": (timezone.now() - timedelta(minutes=150)).isoformat()})
    assert [row["type"] for row in until.json()["results"]] == ["open"]


def test_delivery_events(api_client, person_events):
    _, events = person_events
    delivery_id = events["scanner"].delivery_id
    rows = api_client.get(f"/api/deliveries/{delivery_id}/events/").json()["results"]
    assert {row["type"] for row in rows} == {"click", "web_page"}
    assert {row["delivery"] for row in rows} == {delivery_id}
    humans = api_client.get(f"/api/deliveries/{delivery_id}/events/", {"machine": "exclude"}).json()["results"]
    assert [row["type"] for row in humans] == ["web_page"]
    assert api_client.get("/api/deliveries/999999/events/").status_code == 404
