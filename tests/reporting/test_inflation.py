"""Numbers a client cannot inflate: one click link replayed by a client that keeps no cookie, from the
click endpoint through consolidation to the indicators API."""
import datetime as dt
import time

import pytest
from django.test import Client
from django.utils import timezone

from deliveries.models import DeliveryStatus, MessageStatus
from deliveries.tokens import Purpose, make_token
from reporting.statistics import reports_refresh
from tests.factories import DeliveryFactory, MessageFactory, TrackedUrlFactory
from tracking import machine, persons
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
REPLAYS = 300


@pytest.fixture
def one_window(monkeypatch):
    """Every click in the middle of one person window (a replay must not straddle two by chance)."""
    window = persons.COOKIELESS_PERSON_WINDOW
    middle = dt.datetime.fromtimestamp((time.time() // window + 0.5) * window, tz=dt.UTC)
    monkeypatch.setattr("tracking.views.endpoints.timezone.now", lambda: middle)


@pytest.fixture
def sent():
    delivery = DeliveryFactory(status=DeliveryStatus.FINISHED, to_deliver=1, processed=1, success=1)
    message = MessageFactory(
        delivery=delivery, email="reader@a.example", status=MessageStatus.SENT,
        sent_at=timezone.now() - dt.timedelta(hours=2),
    )
    link = TrackedUrlFactory(delivery=delivery, url="https://shop.example.com/sale")
    return delivery, make_token(Purpose.CLICK, message.id, link.id)


def indicators(api_client, delivery, machine_scope: str) -> dict:
    response = api_client.get(f"/api/deliveries/{delivery.pk}/reports/indicators/", {"machine": machine_scope})
    assert response.status_code == 200
    return response.json()


def test_a_link_replayed_without_cookies_is_one_person_and_a_flood(api_client, one_window, sent):
    delivery, token = sent
    for _ in range(REPLAYS):
        # A new client each time: it keeps no cookie.
        response = Client().get(f"/r/{token}", HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="198.51.100.7")
        assert response.status_code == 302
    reports_refresh()

    # Nothing dropped: every click is stored; those past the flood threshold are a machine's.
    events = TrackingEvent.objects.filter(delivery=delivery)
    assert events.count() == REPLAYS
    assert events.filter(is_machine=False).count() == machine.FLOOD_CLICKS
    assert set(events.filter(is_machine=True).values_list("machine_reason", flat=True)) == {machine.REASON_FLOOD}
    assert len(set(events.values_list("browser_id", flat=True))) == 1

    humans = indicators(api_client, delivery, "exclude")
    assert (humans["total_clicks"], humans["distinct_clicks"], humans["distinct_click_persons"]) == (
        machine.FLOOD_CLICKS, 1, 1,
    )
    assert humans["estimated_forwards"] == 0 and humans["percentages"]["estimated_forwards"] == 0
    everything = indicators(api_client, delivery, "include")
    assert (everything["total_clicks"], everything["distinct_click_persons"], everything["estimated_forwards"]) == (
        REPLAYS, 1, 0,
    )


def test_a_forward_clicked_elsewhere_is_still_another_person(api_client, one_window, sent):
    delivery, token = sent
    Client().get(f"/r/{token}", HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="198.51.100.7")
    Client().get(f"/r/{token}", HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="198.51.100.8")  # same /24: same client
    Client().get(f"/r/{token}", HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="203.0.113.9")  # another network
    Client().get(f"/r/{token}", HTTP_USER_AGENT=BROWSER.replace("Chrome/120", "Chrome/121"), REMOTE_ADDR="198.51.100.7")
    reports_refresh()
    humans = indicators(api_client, delivery, "exclude")
    assert (humans["total_clicks"], humans["distinct_click_persons"], humans["estimated_forwards"]) == (4, 3, 2)
