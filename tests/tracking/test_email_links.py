"""The links of a really sent email, followed through the endpoints."""
from urllib.parse import quote

import pytest
from django.test import Client

from deliveries.models import TrackedUrl, TrackingMode
from profiles.models import EmailStatus, Profile
from tests.tracking.conftest import BROWSER
from tracking.models import EventType, TrackingEvent
from tracking.views.recipient_pages import MIRROR_CSP

pytestmark = pytest.mark.django_db


def test_clicks_redirect_to_each_recipients_own_url(client, sent_email):
    targets = sorted(client.get(path, HTTP_USER_AGENT=BROWSER)["Location"] for path in sent_email["links"]["r"])
    assert targets == [
        "https://shop.example.com/me?name=" + quote("Zoë & Co"),
        "https://shop.example.com/sale",
    ]
    events = TrackingEvent.objects.filter(type=EventType.CLICK)
    assert events.count() == 2
    assert set(events.values_list("profile_id", flat=True)) == {sent_email["profile"].id}


def test_open_pixel_records_an_open(client, sent_email):
    [pixel] = sent_email["links"]["o"]
    response = client.get(pixel, HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 200 and response["Content-Type"] == "image/gif"
    assert "no-store" in response["Cache-Control"]
    event = TrackingEvent.objects.get()
    assert (event.type, event.message_id, event.delivery_id) == (
        EventType.OPEN,
        sent_email["message"].id,
        sent_email["delivery"].id,
    )


def test_mirror_page_is_the_received_message_under_a_sandbox_csp(client, sent_email):
    [mirror] = sent_email["links"]["m"]
    response = client.get(mirror, HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Zoë &amp; Co" in body or "Zoë & Co" in body
    assert "/r/" in body
    assert response["Content-Security-Policy"] == MIRROR_CSP
    assert MIRROR_CSP.startswith("sandbox ") and "allow-scripts" not in MIRROR_CSP
    event = TrackingEvent.objects.get()
    assert event.type == EventType.MIRROR
    assert event.tracked_url_id == TrackedUrl.objects.get(delivery=sent_email["delivery"], mode=TrackingMode.MIRROR).id


def test_mirror_page_of_a_message_past_the_render_limit_is_a_404_not_a_500(client, sent_email, settings):
    # The limit was lowered since sending: the message no longer renders within it.
    settings.BEACON_MAX_RENDERED_CHARACTERS = 10
    [mirror] = sent_email["links"]["m"]
    response = client.get(mirror, HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 404
    assert not TrackingEvent.objects.exists()


def test_unsubscribe_get_changes_nothing_and_post_opts_out_once(sent_email):
    [unsubscribe] = sent_email["links"]["u"]
    client = Client(enforce_csrf_checks=True)
    page = client.get(unsubscribe, HTTP_USER_AGENT=BROWSER)
    assert page.status_code == 200 and b"<form" in page.content
    profile = Profile.objects.get(pk=sent_email["profile"].pk)
    assert profile.email_status == EmailStatus.VALID
    assert not TrackingEvent.objects.filter(type=EventType.OPT_OUT).exists()

    for _ in range(2):
        response = client.post(unsubscribe, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200
    profile.refresh_from_db()
    assert profile.email_status == EmailStatus.DENYLISTED and profile.opted_out_at is not None
    opt_out = TrackingEvent.objects.get(type=EventType.OPT_OUT)
    assert opt_out.message_id == sent_email["message"].id
    optout_url = TrackedUrl.objects.get(delivery=sent_email["delivery"], mode=TrackingMode.OPT_OUT)
    assert opt_out.tracked_url_id == optout_url.id
    page_view = TrackingEvent.objects.get(type=EventType.CLICK)
    assert page_view.tracked_url_id == optout_url.id


def test_list_unsubscribe_header_is_one_click(sent_email):
    header = sent_email["email"].extra_headers["List-Unsubscribe"]
    path = header.split(",")[0].strip("<> ").replace("https://beacon.example.net", "")
    response = Client().post(path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert Profile.objects.get(pk=sent_email["profile"].pk).email_status == EmailStatus.DENYLISTED


def test_later_deliveries_exclude_the_opted_out_profile(client, sent_email):
    from deliveries import services as delivery_services
    from deliveries.models import FailureReason, Message, MessageStatus
    from tests.factories import DeliveryFactory

    [unsubscribe] = sent_email["links"]["u"]
    client.post(unsubscribe)
    later = DeliveryFactory(lists=list(sent_email["delivery"].lists.all()))
    delivery_services.delivery_analyze(delivery_id=later.pk)
    message = Message.objects.get(delivery=later, profile=sent_email["profile"])
    assert message.status == MessageStatus.IGNORED and message.failure_reason == FailureReason.DENYLISTED


def test_tokens_of_one_kind_do_not_work_on_another_endpoint(client, sent_email):
    [unsubscribe] = sent_email["links"]["u"]
    [mirror] = sent_email["links"]["m"]
    token = unsubscribe.rsplit("/", 1)[1]
    assert client.get(f"/r/{token}").status_code == 404
    assert client.get(f"/m/{token}").status_code == 404
    assert client.post(f"/u/{mirror.rsplit('/', 1)[1]}").status_code == 404
    assert Profile.objects.get(pk=sent_email["profile"].pk).email_status == EmailStatus.VALID
