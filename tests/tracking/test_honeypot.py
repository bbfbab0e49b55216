"""The hidden honeypot link: in the HTML part of every message, seen and reached by no person, so a click
on it is a machine's, and so are the other clicks of that client around it."""
import uuid
from datetime import UTC, datetime

import pytest
from bs4 import BeautifulSoup
from django.core import mail
from django.test import Client

from deliveries import services as delivery_services
from deliveries.models import TrackedUrl, TrackingMode
from deliveries.tokens import Purpose, read_token
from profiles.models import EmailFormat
from reporting.consolidation.pointer import events_consolidate
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory
from tests.tracking.conftest import BROWSER, PUBLIC
from tracking import machine
from tracking.ingest.consumer import stream_consume_batch
from tracking.ingest.event import Event, new_event
from tracking.ingest.store import events_store
from tracking.models import EventType, TrackingEvent

pytestmark = pytest.mark.django_db

HONEYPOT_LABEL = "Hidden honeypot link (machine clicks only)"
OTHER_BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15"


def path_of(url: str) -> str:
    assert url.startswith(PUBLIC)
    return url[len(PUBLIC):]


def honeypot_url(delivery) -> TrackedUrl:
    return TrackedUrl.objects.get(delivery=delivery, mode=TrackingMode.HONEYPOT)


def test_the_html_part_has_one_hidden_honeypot_link_with_a_valid_token(sent_email):
    honeypot = sent_email["honeypot"]
    assert honeypot["tabindex"] == "-1" and honeypot["aria-hidden"] == "true"
    style = honeypot["style"].replace(" ", "")
    assert "display:none!important" in style and "mso-hide:all" in style
    assert honeypot.get_text(strip=True) == "" and honeypot.find(True) is None  # no text, no image
    path = path_of(honeypot["href"])
    assert path.startswith("/r/")
    token = read_token(path[len("/r/"):], Purpose.CLICK)
    assert (token.message_id, token.url_id) == (sent_email["message"].id, honeypot_url(sent_email["delivery"]).id)


@pytest.fixture
def send_to(settings, django_capture_on_commit_callbacks):
    """Analyzes and sends a delivery to one profile; returns the email it got."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    def send(profile, **content) -> mail.EmailMessage:
        delivery = DeliveryFactory(lists=[ListFactory(members=[profile])], **content)
        delivery_services.delivery_analyze(delivery_id=delivery.pk)
        with django_capture_on_commit_callbacks(execute=True):
            delivery_services.delivery_send(delivery_id=delivery.pk)
        [email] = mail.outbox
        return email

    return send


def test_only_the_html_part_has_it(send_to):
    email = send_to(ProfileFactory(), text="Sale: https://shop.example.com/sale")
    html = email.alternatives[0][0]
    [honeypot] = BeautifulSoup(html, "html.parser").find_all("a", attrs={"aria-hidden": "true"})
    assert email.body.count(f"{PUBLIC}/r/") == 1  # the sale link of the text part, nothing hidden
    assert honeypot["href"] not in email.body


def test_a_text_only_recipient_of_an_html_delivery_gets_no_trace_of_it(send_to):
    email = send_to(
        ProfileFactory(email_format=EmailFormat.TEXT),
        html='<p><a href="https://shop.example.com/sale">Sale</a> <a href="{{ unsubscribe_url }}">Stop</a></p>',
        text="",
    )
    assert email.content_subtype == "plain" and not getattr(email, "alternatives", None)
    assert email.body.count(f"{PUBLIC}/r/") == 1  # the sale link only


def test_a_click_on_it_is_a_machine_click_sent_to_a_harmless_page(client, sent_email):
    response = client.get(path_of(sent_email["honeypot"]["href"]), HTTP_USER_AGENT=BROWSER)

    assert response.status_code == 302 and response["Location"] == f"{PUBLIC}/"
    assert not response.cookies  # no browser id, no web-tracking cookie for a machine
    event = TrackingEvent.objects.get()
    assert (event.type, event.is_machine, event.machine_reason) == (EventType.CLICK, True, machine.REASON_HONEYPOT)
    assert event.tracked_url_id == honeypot_url(sent_email["delivery"]).id


@pytest.fixture(params=["direct", "stream"])
def ingestion(request, settings):
    """Each click written by its request, or all of them consumed from the stream in one batch."""
    if request.param == "direct":
        return lambda: None
    settings.BEACON_EVENT_REDIS_URL = request.getfixturevalue("redis_url")
    return lambda: stream_consume_batch(consumer="test")


def test_the_other_clicks_of_the_client_that_clicked_it_are_machine_clicks_too(sent_email, ingestion):
    scanner = Client(HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="198.51.100.7")
    person = Client(HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="203.0.113.9")
    same_network_other_browser = Client(HTTP_USER_AGENT=OTHER_BROWSER, REMOTE_ADDR="198.51.100.8")
    sale, _ = sent_email["links"]["r"]  # only one link is clicked: no burst (every link at once)

    scanner.get(sale)  # looks human until its honeypot click
    scanner.get(path_of(sent_email["honeypot"]["href"]))
    scanner.get(sale)
    person.get(sale)
    same_network_other_browser.get(sale)
    ingestion()

    events = TrackingEvent.objects.filter(type=EventType.CLICK)
    assert sorted(events.filter(ip="198.51.100.0", user_agent__raw=BROWSER).values_list("machine_reason", flat=True)) == [
        machine.REASON_HONEYPOT, machine.REASON_HONEYPOT_CLIENT, machine.REASON_HONEYPOT_CLIENT
    ]
    assert events.count() == 5
    assert events.filter(is_machine=False).count() == 2


def test_only_clicks_within_a_few_seconds_of_the_honeypot_click_are_marked(sent_email):
    message = sent_email["message"]
    delivery = sent_email["delivery"]
    sale = TrackedUrl.objects.get(delivery=delivery, url="https://shop.example.com/sale")
    at = datetime(2026, 11, 23, 10, 0, tzinfo=UTC).timestamp()

    def click(url_id: int, seconds: float, *, user_agent: str = BROWSER, reason: str = "") -> Event:
        event = new_event(
            type=EventType.CLICK, delivery_id=delivery.id, message_id=message.id, profile_id=message.profile_id,
            tracked_url_id=url_id, user_agent=user_agent, ip="198.51.100.0", machine_reason=reason,
        )
        return event._replace(logged_at=at + seconds)

    events = {
        "before": click(sale.id, -4),
        "other browser": click(sale.id, 1, user_agent=OTHER_BROWSER),
        "long after": click(sale.id, 6),
    }
    events_store([*events.values(), click(honeypot_url(delivery).id, 0, reason=machine.REASON_HONEYPOT)])

    machine_ids = {str(pk) for pk in TrackingEvent.objects.filter(is_machine=True).values_list("event_id", flat=True)}
    marked = {name for name, event in events.items() if str(uuid.UUID(event.event_id)) in machine_ids}
    assert marked == {"before"}


def test_reports_never_count_it_as_a_link_of_the_humans(api_client, sent_email):
    delivery = sent_email["delivery"]
    sale, _ = sent_email["links"]["r"]
    Client(HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="203.0.113.9").get(sale)
    scanner = Client(HTTP_USER_AGENT=OTHER_BROWSER, REMOTE_ADDR="198.51.100.7")
    scanner.get(path_of(sent_email["honeypot"]["href"]))
    events_consolidate()

    def report(name: str, **params) -> dict:
        response = api_client.get(f"/api/deliveries/{delivery.pk}/reports/{name}/", params)
        assert response.status_code == 200
        return response.json()

    humans = report("urls")
    assert [row["url"] for row in humans["links"]] == ["https://shop.example.com/sale"] and humans["total_clicks"] == 1
    indicators = report("indicators")
    assert (indicators["total_clicks"], indicators["distinct_clicks"]) == (1, 1)
    hot = report("hot-clicks")
    assert honeypot_url(delivery).id not in {link["tracked_url_id"] for link in hot["links"]}
    assert hot["total_clicks"] == 1
    # With machines included, the honeypot's row says what it is.
    everything = report("urls", machine="include")
    assert {row["name"] for row in everything["links"]} == {"Sale", HONEYPOT_LABEL}
