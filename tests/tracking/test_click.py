from datetime import timedelta

import pytest
from django.http import HttpResponse
from django.utils import timezone

from deliveries.models import TrackingMode
from deliveries.tokens import Purpose, make_token
from tests.tracking.conftest import BROWSER
from tests.factories import DeliveryFactory, MessageFactory, ProfileFactory, TrackedUrlFactory
from tracking import machine
from tracking.models import EventType, TrackingEvent, UserAgent
from tracking.views.base import BROWSER_COOKIE, WEB_COOKIE

pytestmark = pytest.mark.django_db



@pytest.fixture
def link(sent_message):
    return TrackedUrlFactory(delivery=sent_message.delivery, url="https://shop.example.com/sale?x=1")


def click(client, message, url, **headers):
    headers.setdefault("HTTP_USER_AGENT", BROWSER)
    return client.get(f"/r/{make_token(Purpose.CLICK, message.id, url.id)}", **headers)


def test_click_redirects_to_the_stored_url_and_records_the_event(client, sent_message, link):
    response = click(client, sent_message, link, REMOTE_ADDR="203.0.113.77")
    assert response.status_code == 302
    assert response["Location"] == "https://shop.example.com/sale?x=1"
    assert response["Cache-Control"] == "no-store"
    event = TrackingEvent.objects.get()
    assert event.type == EventType.CLICK
    assert (event.delivery_id, event.message_id, event.profile_id, event.tracked_url_id) == (
        sent_message.delivery_id,
        sent_message.id,
        sent_message.profile_id,
        link.id,
    )
    assert event.ip == "203.0.113.0"
    assert not event.is_machine and event.machine_reason == ""
    assert UserAgent.objects.get(pk=event.user_agent_id).raw == BROWSER
    assert len(event.browser_id) == 32
    assert response.cookies[BROWSER_COOKIE].value == event.browser_id
    browser_cookie = response.cookies[BROWSER_COOKIE]
    assert (browser_cookie["samesite"], browser_cookie["httponly"], browser_cookie["secure"]) == ("Lax", True, True)
    assert browser_cookie["max-age"] == 2 * 365 * 24 * 3600 and browser_cookie["path"] == "/"
    assert response.cookies[WEB_COOKIE].value


def test_click_cookies_are_the_set_cookie_headers_django_would_write(client, sent_message, link):
    response = click(client, sent_message, link)
    for name, max_age in ((BROWSER_COOKIE, 2 * 365 * 24 * 3600), (WEB_COOKIE, 30 * 24 * 3600)):
        standard = HttpResponse()
        standard.set_cookie(name, response.cookies[name].value, max_age=max_age, httponly=True, samesite="Lax", secure=True)
        # Django writes Expires beside Max-Age; the click leaves the date out on purpose.
        del standard.cookies[name]["expires"]
        assert response.cookies[name].output() == standard.cookies[name].output()


def test_ipv6_addresses_lose_their_last_80_bits(client, sent_message, link):
    click(client, sent_message, link, REMOTE_ADDR="2001:db8:abcd:1234:5678:9abc:def0:1234")
    assert TrackingEvent.objects.get().ip == "2001:db8:abcd::"


def test_browser_cookie_tells_persons_apart(client, sent_message, link):
    first = click(client, sent_message, link)
    click(client, sent_message, link)
    from django.test import Client

    # Another browser: from the same network, a client without a cookie would be the same person.
    click(Client(), sent_message, link, REMOTE_ADDR="203.0.113.9")
    browser_ids = list(TrackingEvent.objects.order_by("id").values_list("browser_id", flat=True))
    assert browser_ids[0] == browser_ids[1] == first.cookies[BROWSER_COOKIE].value
    assert browser_ids[2] != browser_ids[0]


def test_profile_without_tracking_consent_is_counted_anonymously(client):
    message = MessageFactory(profile=ProfileFactory(tracking_consent=False), sent_at=timezone.now() - timedelta(hours=1))
    url = TrackedUrlFactory(delivery=message.delivery)
    assert click(client, message, url).status_code == 302
    event = TrackingEvent.objects.get()
    assert event.profile_id is None and event.message_id == message.id


def test_gpc_or_dnt_still_counts_the_click_but_sets_no_cookie(client, sent_message, link):
    response = click(client, sent_message, link, HTTP_SEC_GPC="1")
    assert response.status_code == 302 and not response.cookies
    response = click(client, sent_message, link, HTTP_DNT="1")
    assert response.status_code == 302 and not response.cookies
    assert set(TrackingEvent.objects.values_list("browser_id", flat=True)) == {""}


@pytest.mark.parametrize(
    "suffix",
    [
        "//evil.example",
        "/..%2F..%2Fevil.example",
        "%2F%2Fevil.example",
        "?next=https://evil.example",
        "/https://evil.example",
        "@evil.example",
        "%40evil.example",
        "x",
    ],
)
def test_tampered_tokens_get_a_plain_404_never_a_redirect(client, sent_message, link, suffix):
    token = make_token(Purpose.CLICK, sent_message.id, link.id)
    response = client.get(f"/r/{token}{suffix}")
    if response.status_code == 302:
        # Only an appended query string leaves the token intact; the target stays the stored URL.
        assert suffix.startswith("?")
        assert response["Location"] == "https://shop.example.com/sale?x=1"
    else:
        assert response.status_code == 404
        assert "Location" not in response


@pytest.mark.parametrize(
    "path",
    [
        "/r/",
        "/r/garbage",
        "/r/%2F%2Fevil.example",
        "/r///evil.example",
        "/r/trusted@evil.example",
        "/r/" + "A" * 300,
    ],
)
def test_garbage_gets_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "Location" not in response
    assert TrackingEvent.objects.count() == 0


def test_token_of_one_delivery_with_a_url_of_another_is_refused(client, sent_message):
    other_url = TrackedUrlFactory(delivery=DeliveryFactory(), url="https://evil.example/")
    assert click(client, sent_message, other_url).status_code == 404
    assert TrackingEvent.objects.count() == 0


def test_a_token_has_one_spelling(client):
    """base64 decoders ignore the last character's unused low bits: a token with them set is refused."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # Ids of five varint bytes each: a 22-byte token, 30 characters, the last with 4 unused bits.
    message = MessageFactory(pk=9_000_000_001, sent_at=timezone.now() - timedelta(hours=1))
    url = TrackedUrlFactory(pk=9_000_000_002, delivery=message.delivery)
    token = make_token(Purpose.CLICK, message.id, url.id)
    assert len(token) == 30
    last = alphabet.index(token[-1])
    respelled = token[:-1] + alphabet[last | 1]
    assert respelled != token
    assert client.get(f"/r/{token}").status_code == 302
    assert client.get(f"/r/{respelled}").status_code == 404
    assert TrackingEvent.objects.count() == 1


def test_token_of_another_purpose_is_refused(client, sent_message, link):
    response = client.get(f"/r/{make_token(Purpose.OPEN, sent_message.id, link.id)}")
    assert response.status_code == 404


def test_unknown_message_or_url_and_deleted_delivery_get_404(client, sent_message, link):
    assert client.get(f"/r/{make_token(Purpose.CLICK, 987654, link.id)}").status_code == 404
    assert client.get(f"/r/{make_token(Purpose.CLICK, sent_message.id, 987654)}").status_code == 404
    token = make_token(Purpose.CLICK, sent_message.id, link.id)
    assert client.get(f"/r/{token}").status_code == 302
    sent_message.delivery.delete()
    assert client.get(f"/r/{token}").status_code == 404


@pytest.mark.parametrize(
    "stored",
    ["//evil.example/", "javascript:alert(1)", "https://shop.example.com/\r\nSet-Cookie: x=1", "/relative", ""],
)
def test_a_stored_url_that_is_not_absolute_http_is_never_redirected_to(client, sent_message, stored):
    url = TrackedUrlFactory(delivery=sent_message.delivery, url=stored)
    response = click(client, sent_message, url)
    assert response.status_code == 404 and "Location" not in response


@pytest.mark.parametrize(
    "stored, location",
    [
        ("https://example.com/€/日本", "https://example.com/%E2%82%AC/%E6%97%A5%E6%9C%AC"),
        ("https://example.com/café?q=crème#à", "https://example.com/caf%C3%A9?q=cr%C3%A8me#%C3%A0"),
        ("https://Bücher.example:8443/straße?x=%20", "https://xn--bcher-kva.example:8443/stra%C3%9Fe?x=%20"),
        ("https://example.com/ascii?a=1&b=%E2%82%AC", "https://example.com/ascii?a=1&b=%E2%82%AC"),
    ],
)
def test_a_link_with_non_ascii_characters_redirects_to_its_uri(client, sent_message, stored, location):
    url = TrackedUrlFactory(delivery=sent_message.delivery, url=stored)
    response = click(client, sent_message, url)
    assert response.status_code == 302
    assert response["Location"] == location
    assert response.serialize_headers().decode("ascii").count(f"Location: {location}") == 1


def test_a_personalized_link_with_non_ascii_characters_redirects_to_its_uri(client):
    message = MessageFactory(profile=ProfileFactory(first_name="Zoë"), sent_at=timezone.now() - timedelta(hours=1))
    url = TrackedUrlFactory(
        delivery=message.delivery, url="https://shop.example.com/é/{{ profile.first_name }}", is_personalized=True
    )
    response = click(client, message, url)
    assert response["Location"] == "https://shop.example.com/%C3%A9/Zo%C3%AB"


@pytest.mark.parametrize("stored", ["https://a..ü/x", "https://" + "ü" * 64 + ".example/"])
def test_a_link_that_has_no_uri_is_not_redirected_to(client, sent_message, stored):
    url = TrackedUrlFactory(delivery=sent_message.delivery, url=stored)
    response = click(client, sent_message, url)
    assert response.status_code == 404 and "Location" not in response


@pytest.mark.parametrize("mode", [TrackingMode.OPT_OUT, TrackingMode.MIRROR, TrackingMode.NOT_TRACKED])
def test_click_tokens_only_lead_to_tracked_links(client, sent_message, mode):
    url = TrackedUrlFactory(delivery=sent_message.delivery, mode=mode)
    assert click(client, sent_message, url).status_code == 404


def test_post_is_not_allowed_on_clicks(client, sent_message, link):
    response = client.post(f"/r/{make_token(Purpose.CLICK, sent_message.id, link.id)}")
    assert response.status_code == 405
    assert TrackingEvent.objects.count() == 0


def test_direct_write_click_makes_few_queries(client, sent_message, link, django_assert_max_num_queries):
    with django_assert_max_num_queries(7):
        # Cold: message, URL, user agent insert and select, whether the message's person is erased, event
        # insert, the message's recent clicks.
        assert click(client, sent_message, link).status_code == 302
    with django_assert_max_num_queries(3):
        # Warm: whether the message's person is erased, the event insert and the burst check.
        assert click(client, sent_message, link).status_code == 302


@pytest.mark.parametrize(
    "headers, reason",
    [
        ({"HTTP_PURPOSE": "prefetch"}, machine.REASON_PREFETCH),
        ({"HTTP_SEC_PURPOSE": "prefetch;prerender"}, machine.REASON_PREFETCH),
        ({"HTTP_USER_AGENT": "Mozilla/5.0 (compatible; Barracuda Sentinel)"}, machine.REASON_SCANNER),
        ({"HTTP_USER_AGENT": "python-requests/2.31"}, machine.REASON_SCANNER),
        ({"HTTP_USER_AGENT": ""}, machine.REASON_SCANNER),
    ],
)
def test_machine_clicks_are_flagged_not_dropped(client, sent_message, link, headers, reason):
    response = click(client, sent_message, link, **headers)
    assert response.status_code == 302
    event = TrackingEvent.objects.get()
    assert event.is_machine and event.machine_reason == reason
    assert BROWSER_COOKIE not in response.cookies


def test_head_request_is_a_machine(client, sent_message, link):
    response = client.head(f"/r/{make_token(Purpose.CLICK, sent_message.id, link.id)}", HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 302
    assert TrackingEvent.objects.get().machine_reason == machine.REASON_HEAD


def test_click_seconds_after_sending_is_a_machine(client):
    message = MessageFactory(sent_at=timezone.now() - timedelta(seconds=2))
    url = TrackedUrlFactory(delivery=message.delivery)
    click(client, message, url)
    assert TrackingEvent.objects.get().machine_reason == machine.REASON_TOO_FAST


def test_honeypot_link_click_is_a_machine(client, sent_message):
    honeypot = TrackedUrlFactory(delivery=sent_message.delivery, mode=TrackingMode.HONEYPOT, url="https://shop.example.com/")
    assert click(client, sent_message, honeypot).status_code == 302
    assert TrackingEvent.objects.get().machine_reason == machine.REASON_HONEYPOT


def test_burst_on_every_link_within_a_second_is_a_machine(client, sent_message):
    links = [TrackedUrlFactory(delivery=sent_message.delivery) for _ in range(3)]
    for url in links:
        click(client, sent_message, url)
    reasons = set(TrackingEvent.objects.values_list("machine_reason", flat=True))
    assert reasons == {machine.REASON_BURST}


def test_clicking_some_links_is_not_a_burst(client, sent_message):
    links = [TrackedUrlFactory(delivery=sent_message.delivery) for _ in range(3)]
    click(client, sent_message, links[0])
    click(client, sent_message, links[1])
    assert not TrackingEvent.objects.filter(is_machine=True).exists()
