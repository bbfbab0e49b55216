import re
from decimal import Decimal
from urllib.parse import quote

import pytest
from django.test import Client

from deliveries.tokens import Purpose, make_token
from tests.factories import TrackedUrlFactory
from tests.tracking.conftest import BROWSER
from tracking import machine
from tracking.models import EventType, TrackingEvent
from tracking.views.base import BROWSER_COOKIE, WEB_COOKIE, WEB_OPT_OUT_COOKIE

pytestmark = pytest.mark.django_db


def open_(client, message, **headers):
    headers.setdefault("HTTP_USER_AGENT", BROWSER)
    return client.get(f"/o/{make_token(Purpose.OPEN, message.id)}", **headers)


def test_open_of_a_person(client, sent_message):
    assert open_(client, sent_message, REMOTE_ADDR="198.51.100.23").status_code == 200
    event = TrackingEvent.objects.get()
    assert (event.type, event.is_machine, event.ip) == (EventType.OPEN, False, "198.51.100.0")


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_USER_AGENT": "Mozilla/5.0", "REMOTE_ADDR": "192.0.2.1"},
        {"HTTP_USER_AGENT": BROWSER, "REMOTE_ADDR": "17.58.101.7"},
    ],
)
def test_apple_mail_privacy_protection_opens_are_machine_opens(client, sent_message, headers):
    open_(client, sent_message, **headers)
    event = TrackingEvent.objects.get()
    assert event.is_machine and event.machine_reason == machine.REASON_APPLE_MPP


def test_open_token_errors_are_404(client, sent_message):
    assert client.get(f"/o/{make_token(Purpose.CLICK, sent_message.id, 1)}").status_code == 404
    assert client.get(f"/o/{make_token(Purpose.OPEN, 424242)}").status_code == 404
    assert client.get("/o/nonsense").status_code == 404
    assert TrackingEvent.objects.count() == 0


def test_forwarded_x_for_is_used_only_when_trusted(client, sent_message, settings):
    open_(client, sent_message, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    settings.BEACON_TRUST_X_FORWARDED_FOR = True
    open_(client, sent_message, REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9")
    assert list(TrackingEvent.objects.order_by("id").values_list("ip", flat=True)) == ["10.0.0.0", "203.0.113.0"]


@pytest.fixture
def clicked(client, sent_message):
    """A browser that clicked a link of the message: it holds the web cookie."""
    url = TrackedUrlFactory(delivery=sent_message.delivery, url="https://shop.example.com/")
    response = client.get(f"/r/{make_token(Purpose.CLICK, sent_message.id, url.id)}", HTTP_USER_AGENT=BROWSER)
    assert WEB_COOKIE in response.cookies
    return url


def test_web_visits_and_transactions_tie_to_the_click(client, sent_message, clicked):
    client.get("/w/p.gif", {"url": "https://shop.example.com/product/7"}, HTTP_USER_AGENT=BROWSER)
    client.get("/w/p.gif", {"url": "https://shop.example.com/checkout", "amount": "49.90"}, HTTP_USER_AGENT=BROWSER)
    visits = TrackingEvent.objects.filter(type=EventType.WEB_PAGE).order_by("id")
    assert [(v.page_url, v.amount) for v in visits] == [
        ("https://shop.example.com/product/7", None),
        ("https://shop.example.com/checkout", Decimal("49.90")),
    ]
    click = TrackingEvent.objects.get(type=EventType.CLICK)
    for visit in visits:
        assert (visit.delivery_id, visit.message_id, visit.profile_id, visit.tracked_url_id) == (
            sent_message.delivery_id,
            sent_message.id,
            sent_message.profile_id,
            clicked.id,
        )
        assert visit.browser_id == click.browser_id == client.cookies[BROWSER_COOKIE].value


@pytest.mark.parametrize("headers", [{"HTTP_SEC_GPC": "1"}, {"HTTP_DNT": "1"}])
def test_gpc_and_dnt_mean_no_web_tracking(client, clicked, headers):
    response = client.get("/w/p.gif", {"url": "https://shop.example.com/"}, **headers)
    assert response.status_code == 200 and response["Content-Type"] == "image/gif"
    assert not TrackingEvent.objects.filter(type=EventType.WEB_PAGE).exists()


def test_opt_out_cookie_stops_web_tracking(client, clicked):
    page = client.get("/w/opt-out")
    assert page.status_code == 200 and b"<form" in page.content
    response = client.post("/w/opt-out")
    assert response.cookies[WEB_OPT_OUT_COOKIE].value == "1"
    assert response.cookies[WEB_COOKIE]["max-age"] == 0
    client.get("/w/p.gif", {"url": "https://shop.example.com/"})
    assert not TrackingEvent.objects.filter(type=EventType.WEB_PAGE).exists()
    assert b"opted out" in client.get("/w/opt-out").content


def test_visitors_not_from_an_email_are_not_tracked(sent_message):
    assert Client().get("/w/p.gif", {"url": "https://shop.example.com/"}).status_code == 200
    forged = Client()
    forged.cookies[WEB_COOKIE] = make_token(Purpose.OPEN, sent_message.id)
    forged.get("/w/p.gif", {"url": "https://shop.example.com/"})
    assert TrackingEvent.objects.count() == 0


def test_a_bad_page_url_is_dropped_not_stored(client, clicked):
    client.get("/w/p.gif", {"url": "javascript:alert(1)"})
    visit = TrackingEvent.objects.get(type=EventType.WEB_PAGE)
    assert (visit.page_url, visit.amount) == ("", None)


@pytest.mark.parametrize(
    "amount",
    ["-5000", "-0.01", "9999999999.99", "1000000.01", "1e12", "NaN", "-Infinity", "lots", "12\x0034", "%ED%A0%80",
     "9" * 10_000, "<script>alert(1)</script>"],
)
def test_a_negative_absurd_or_unreadable_amount_is_refused_and_nothing_recorded(client, clicked, amount):
    # Sent as the page would: URL-encoded, except the raw UTF-8 of a lone surrogate.
    response = client.get(f"/w/p.gif?url=https%3A%2F%2Fshop.example.com%2F&amount={quote(amount, safe='%')}")
    assert response.status_code == 400
    # A NUL is refused, naming the parameter, before the view reads it (beacon.storable).
    assert re.match(r"(amount |“amount” holds a NUL)", response.content.decode())
    assert not TrackingEvent.objects.filter(type=EventType.WEB_PAGE).exists()


def test_the_largest_amount_is_a_setting(client, clicked, settings):
    settings.BEACON_WEB_MAX_AMOUNT = Decimal("100")
    assert client.get("/w/p.gif", {"amount": "99.999"}).status_code == 200
    assert client.get("/w/p.gif", {"amount": "100.01"}).status_code == 400
    assert client.get("/w/p.gif", {"amount": "-0"}).status_code == 200
    amounts = TrackingEvent.objects.filter(type=EventType.WEB_PAGE).order_by("id").values_list("amount", flat=True)
    assert list(amounts) == [Decimal("100.00"), Decimal("0.00")]


def test_tag_script_respects_gpc_and_dnt(client):
    response = client.get("/w/tag.js")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/javascript")
    body = response.content.decode()
    assert "globalPrivacyControl" in body and "doNotTrack" in body
    assert '"https://beacon.example.net"' in body and "/w/p.gif" in body
